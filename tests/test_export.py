"""dlcv export: a checkpoint's model as plain torch code (a folder torch alone runs) or ONNX (dynamic batch),
each checked against the checkpoint's own outputs; and what cannot be exported, refused in one line."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from conftest import expect_error, run_cli

from dlcv.export import checkpoint_model


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

    from dlcv.export import plain_source

    class Up(torch.nn.Module):
        def forward(self, x):
            return F.interpolate(x, size=(6, 6), mode="bilinear", align_corners=False) + F.interpolate(x, scale_factor=2)

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
    from dlcv.export import plain_source

    class Pooled(torch.nn.Module):
        def forward(self, x):
            return x.mean((2, 3))

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return x.reshape(4, -1)

    assert plain_source(Pooled(), torch.rand(4, 2, 3, 3))[3] is True
    assert plain_source(Fixed(), torch.rand(4, 2, 3, 3))[3] is False
