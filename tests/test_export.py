"""dlcv export: a checkpoint's model as plain torch code (a folder torch alone runs) or ONNX (dynamic batch),
each checked against the checkpoint's own outputs; and what cannot be exported, refused in one line."""

from __future__ import annotations

import importlib.util
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import expect_error, run_cli

from dlcv.export import checkpoint_model
from dlcv.files import written_by_dlcv


def _plain(folder):
    spec = importlib.util.spec_from_file_location("plain_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(torch.load(folder / "weights.pth", map_location="cpu"), strict=True)
    return net.eval()


@pytest.mark.parametrize("which", ["trained_run", "seg_run"])
def test_a_checkpoint_exports_to_plain_torch_that_computes_its_outputs(capsys, tmp_path, request, which):
    run = request.getfixturevalue(which)
    code, out, err = run_cli(capsys, "export", run / "best.ckpt", "--output", tmp_path / "plain")
    assert code == 0, err
    assert re.search(r"max difference from the checkpoint's outputs: 0\.00e\+00$", out.strip())
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [".dlcv-output", "model.py", "weights.pth"]
    assert "dlcv" not in (tmp_path / "plain" / "model.py").read_text().split('"""', 2)[2]  # its code names no dlcv
    model, _, example = checkpoint_model(run / "best.ckpt")
    with torch.no_grad():
        assert torch.equal(_plain(tmp_path / "plain")(example), model(example))


@pytest.mark.parametrize("which", ["trained_run", "seg_run"])
def test_a_checkpoint_exports_to_onnx_with_a_dynamic_batch(capsys, tmp_path, request, which):
    onnxruntime = pytest.importorskip("onnxruntime")
    run = request.getfixturevalue(which)
    code, out, err = run_cli(capsys, "export", run / "best.ckpt", "--format", "onnx", "--output", tmp_path / "m.onnx")
    assert code == 0, err
    assert written_by_dlcv(tmp_path / "m.onnx")  # listed in its folder's manifest: a rerun may replace it
    printed = float(out.strip().rsplit(" ", 1)[1])
    model, _, example = checkpoint_model(run / "best.ckpt")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for x in (example[:1], example[:5]):
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == want.shape and np.abs(got - want).max() <= max(printed, 1e-6) * 10


def test_what_cannot_be_exported_is_one_line_and_writes_nothing(capsys, tmp_path, trained_run, monkeypatch):
    (tmp_path / "mine.onnx").write_text("my file")
    expect_error(capsys, r"mine\.onnx: exists and dlcv did not write it; pass --overwrite", "export",
                 trained_run / "best.ckpt", "--format", "onnx", "--output", tmp_path / "mine.onnx")
    expect_error(capsys, r"--output .*model\.txt: an ONNX model's file name ends in \.onnx", "export",
                 trained_run / "best.ckpt", "--format", "onnx", "--output", tmp_path / "model.txt")
    (tmp_path / "plain.txt").write_text("not a checkpoint")
    expect_error(capsys, r"plain\.txt: .*not a", "export", tmp_path / "plain.txt", "--output", tmp_path / "x")

    from dlcv.models.small import DlcvNet

    monkeypatch.setattr(DlcvNet, "forward", lambda self, x: self.head(self.forward_features(x)) if x.sum() > 0
                        else -self.head(self.forward_features(x)))
    expect_error(capsys, r"the model branches on the values of a tensor", "export", trained_run / "best.ckpt",
                 "--output", tmp_path / "y")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.onnx", "plain.txt"]
    assert (tmp_path / "mine.onnx").read_text() == "my file"


def test_the_plain_code_leaves_keywords_at_their_defaults_out(tmp_path):
    """A trace spells out every keyword (interpolate's antialias=False, which torch before 1.11 refuses): the code
    keeps only those a call sets, and computes the same."""
    import ast

    import torch.nn.functional as F

    from dlcv.plain_source import plain_source

    class Up(torch.nn.Module):
        def forward(self, x):
            resized = F.interpolate(x, size=(6, 6), mode="bilinear", align_corners=False)
            return resized + F.interpolate(x, scale_factor=2)

    source, state, *_ = plain_source(Up(), torch.rand(1, 2, 3, 3))
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
             and ast.unparse(node.func).endswith("interpolate")]
    assert [sorted(k.arg for k in call.keywords) for call in calls] == [["align_corners", "mode", "size"],
                                                                        ["scale_factor"]]
    (tmp_path / "up_model.py").write_text(source)
    spec = importlib.util.spec_from_file_location("up_model", tmp_path / "up_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.rand(2, 2, 3, 3)
    assert torch.equal(module.Net()(x), Up()(x))


def test_the_plain_code_says_whether_it_takes_any_batch():
    """A model that pools takes any batch (the hand-in then batches as dlcv's predict does); one whose forward
    fixes the batch it was traced at is run at that batch, padded."""
    from dlcv.plain_source import plain_source

    class Pooled(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.reshape(4, -1)

    assert plain_source(Pooled(), torch.rand(4, 2, 3, 3))[3] is True
    assert plain_source(Fixed(), torch.rand(4, 2, 3, 3))[3] is False


RUN_UNDER = """
import importlib.util, sys, torch
for folder in sys.stdin:  # one family's folder a line: its model.py, weights.pth and io.pt
    folder = folder.rstrip("\\n")
    spec = importlib.util.spec_from_file_location("family_model", folder + "/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(torch.load(folder + "/weights.pth"), strict=True)
    results = []
    with torch.no_grad():
        for x, y in torch.load(folder + "/io.pt"):
            got = net.eval()(x)
            scale = y.abs().max().clamp(min=1)
            top = y.topk(2, dim=1).values
            moved = got.argmax(1) != y.argmax(1)  # a label (a pixel's, for a segmenter) that differs
            margin = ((top[:, 0] - top[:, 1])[moved].max() / scale).item() if moved.any() else 0.0
            results.append("%d %.3e %.3e" % (len(x), ((got - y).abs().max() / scale).item(), margin))
    print(" | ".join(results), flush=True)
"""
# DeepLabV3-ResNet101's 101 layers of random weights accumulate the two torch versions' differences past 1e-4.
TOLERANCE = {"seg/deeplabv3": 1e-3}


@pytest.mark.slow
def test_every_model_family_exports_for_the_course_torch_and_runs_there_at_any_batch(tmp_path, course_python):
    """Every shipped recipe's model family (the largest as a smaller sibling) and ViT, BEiT, ConvNeXt, Swin, RegNet
    and Segformer, small (``benchmarks/export_families.py``), each traced at a batch of 4 for torch 1.12, runs under
    Debian's torch 1.13 at batches of 1 and 3: outputs within 1e-4 of the model's own (of its largest output,
    where that is over 1; ``TOLERANCE`` names the one exception), and a label (per pixel for a segmenter) differs
    only where the model's own top two classes lie within that of each other: a near tie of random weights, not a
    different computation."""
    import subprocess
    import sys

    from conftest import REPO

    from dlcv.plain_source import plain_source

    sys.path.insert(0, str(REPO / "benchmarks"))
    from export_families import calibrated, families  # the benchmark's families, small

    small = families(small=True)
    assert len(small) >= 20
    checker = subprocess.Popen([str(course_python), "-c", RUN_UNDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)  # one interpreter for every family: torch imported once
    try:
        for name, kind, build, side in small:
            torch.manual_seed(0)
            model = calibrated(build(), side)
            x = torch.randn(4, 3, side, side)
            source, state, _, any_batch = plain_source(model, x, "1.12")
            assert any_batch, name
            folder = tmp_path / name.replace("/", "_")
            folder.mkdir()
            (folder / "model.py").write_text(source)
            torch.save(state, folder / "weights.pth")
            with torch.no_grad():
                torch.save([(x[:n], model(x[:n])) for n in (1, 3)], folder / "io.pt")
            checker.stdin.write(f"{folder}\n")
            checker.stdin.flush()
            line = checker.stdout.readline()
            assert line, (name, "the checker under torch 1.13 stopped")
            for result in line.strip().split(" | "):
                batch, difference, margin = result.split()
                bound = TOLERANCE.get(name, 1e-4)
                assert float(difference) <= bound and float(margin) <= 2 * bound, (name, line)
            shutil.rmtree(folder)  # the largest weigh half a gigabyte
    finally:
        checker.stdin.close()
        assert checker.wait(timeout=60) == 0
