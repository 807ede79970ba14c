"""dlcv handin: the folder the course grades, run on a stand-in of its machine (Debian's python3 and torch 1.13, no
dlcv): the course's formats, dlcv's own predictions, the download script. And the scripts' choice of checkpoint."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli, run_script
from PIL import Image

from dlcv.classify import PREDICT_BATCH
from dlcv.files import MANIFEST

SCRIPTS = {2021: ("p1", "seg"), 2022: ("p1", "seg"), 2023: ("p1", "ssl", "seg"), 2024: ("ssl", "seg")}


@pytest.fixture(scope="module")
def office(tmp_path_factory) -> Path:
    """An Office-Home-like test CSV (id,filename,label with empty labels) and its images."""
    root = tmp_path_factory.mktemp("office")
    (root / "test").mkdir()
    rng = np.random.default_rng(0)
    with open(root / "test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "filename", "label"])
        for i in (3, 1, 2, 0):  # the output keeps the CSV's order
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(root / "test" / f"{i}.jpg")
            writer.writerow([i, f"{i}.jpg", ""])
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_run, seg_run) -> Path:
    """A runs folder as a student's: model A and model B's CPU run (copies of one tiny run), seg_cpu."""
    root = tmp_path_factory.mktemp("runs")
    for name in ("p1_model_a", "p1_model_b_cpu"):
        (root / name).mkdir()
        shutil.copy(trained_run / "best.ckpt", root / name / "best.ckpt")
    (root / "seg_cpu").mkdir()
    shutil.copy(seg_run / "best.ckpt", root / "seg_cpu" / "best.ckpt")
    return root


ALLOWED = {"torch", "torchvision", "numpy", "PIL", "scipy", "imageio", "matplotlib", "gdown"}  # the course's list
FORBIDDEN = ("rm", "sudo", "CUDA_VISIBLE_DEVICES", "cp", "mv", "mkdir", "cd", "pip")  # in the years' scripts


def _imports(path: Path) -> set[str]:
    """The top-level modules a Python file imports."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _check_folder(hand: Path, year: int, names: tuple[str, ...]) -> None:
    """The folder holds the year's scripts, per problem the inference, the model and its weights, and the
    download script; its Python parses as the year's Python and imports nothing outside the course's list; its
    shell scripts use no command the year forbids."""
    import ast
    import re

    download = "hw1_download.sh" if year <= 2022 else "hw1_download_ckpt.sh"
    assert sorted(p.name for p in hand.iterdir()) == sorted([
        MANIFEST, download, "tta.py", "files.py", *(f"hw1_{i}.sh" for i in range(1, len(names) + 1)),
        *(f"{n}{suffix}" for n in names for suffix in ("_predict.py", "_model.py", ".pth"))])
    # A file named as a standard module (ssl.py) would be imported in its place: torch 2 imports ssl.
    assert not {p.stem for p in hand.glob("*.py")} & set(sys.stdlib_module_names)
    for path in hand.glob("*.py"):
        ast.parse(path.read_text(), feature_version=(3, 6) if year == 2021 else (3, 8))
        assert "__future__" not in _imports(path)  # Python 3.6 has no lazy annotations
        own = {"tta", "files"} | {f"{n}_model" for n in names}
        assert _imports(path) <= set(sys.stdlib_module_names) | ALLOWED | own, path
        assert "dlcv" not in _imports(path)
    for name in names:  # batches as dlcv's predict batches (a GPU's kernels, and so near ties, follow the shape)
        line = next(t for t in (hand / f"{name}_predict.py").read_text().splitlines() if t.startswith("CONFIG = "))
        config = ast.literal_eval(line.split("=", 1)[1].split("  #")[0])
        assert config["any_batch"]  # these models take any batch: on a GPU, dlcv's batches as they are
        assert config["predict_batch"] == (PREDICT_BATCH if name != "seg" else 4)  # TINY_SEG_RECIPE's eval batch
    for path in hand.glob("*.sh"):
        words = set(re.findall(r"[A-Za-z_]+", re.sub(r"\b[0-9a-f]{64}\b", "", path.read_text())))  # not the sha256s
        assert not words & set(FORBIDDEN), (path, words & set(FORBIDDEN))


def _check_output(name: str, year: int, hand: Path, script: str, work: Path, checkpoint: Path, p1_data: Path,
                  p2_data: Path, office: Path) -> None:
    """Run ``script`` of a hand-in folder on synthetic data: the course's format, and dlcv's own predictions for
    the same checkpoint (labels equal on every image; masks equal on every pixel)."""
    from dlcv.classify import predict as classify_predict
    from dlcv.segment import predict as segment_predict
    from dlcv.ssl import predict as ssl_predict

    if name == "p1":
        done = run_script(hand, script, p1_data / "val_50", work / "pred out.csv", cwd=work)
        assert done.returncode == 0, done.stderr
        rows = list(csv.reader(open(work / "pred out.csv")))
        assert rows[0] == (["image_id", "label"] if year == 2021 else ["filename", "label"])
        classify_predict(checkpoint, p1_data / "val_50", work / "dlcv.csv")
        assert rows[1:] == list(csv.reader(open(work / "dlcv.csv")))[1:]
    elif name == "seg":
        done = run_script(hand, script, p2_data / "validation", work / "masks out", cwd=work)
        assert done.returncode == 0, done.stderr
        segment_predict(checkpoint, p2_data / "validation", work / "dlcv_masks")
        ids = sorted(p.name for p in (work / "dlcv_masks").glob("*_mask.png"))
        assert sorted(p.name for p in (work / "masks out").glob("*_mask.png")) == ids
        for mask in ids:
            got = Image.open(work / "masks out" / mask)
            assert got.mode == "RGB" and (np.asarray(got) == np.asarray(Image.open(work / "dlcv_masks" / mask))).all()
    else:
        done = run_script(hand, script, office / "test.csv", office / "test", work / "ssl out.csv", cwd=work)
        assert done.returncode == 0, done.stderr
        rows = list(csv.reader(open(work / "ssl out.csv")))
        assert rows[0] == ["id", "filename", "label"]
        assert [r[:2] for r in rows[1:]] == [[str(i), f"{i}.jpg"] for i in (3, 1, 2, 0)]
        ssl_predict(checkpoint, office / "test.csv", office / "test", work / "dlcv.csv")
        assert rows == list(csv.reader(open(work / "dlcv.csv")))


@pytest.mark.slow
def test_each_years_handin_folder_runs_on_the_course_packages_alone_and_predicts_as_dlcv(
        capsys, tmp_path, runs, trained_run, p1_data, p2_data, office, course_python):
    """Every year's folder is written and checked; each kind of script runs once (from a folder whose path holds
    a space, as the course's may), under Debian's python3 and torch 1.13 without dlcv."""
    ran = set()
    for year, names in SCRIPTS.items():
        hand = tmp_path / f"hand in {year}"
        ssl = ("--checkpoint", f"ssl={trained_run / 'best.ckpt'}") if "ssl" in names else ()
        code, out, err = run_cli(capsys, "handin", "--year", year, "--output", hand, "--runs", runs, *ssl)
        assert code == 0, err
        _check_folder(hand, year, names)
        for name in names:  # each file with its size and source
            assert f"{name}.pth" in out
        assert f"note: no --url NAME=URL for {', '.join(sorted(f'{n}.pth' for n in names))}" in out
        if "p1" in names:  # model B before model A
            assert f"from {runs / 'p1_model_b_cpu' / 'best.ckpt'}" in out
        checkpoints = {"p1": runs / "p1_model_b_cpu" / "best.ckpt", "seg": runs / "seg_cpu" / "best.ckpt",
                       "ssl": trained_run / "best.ckpt"}
        for number, name in enumerate(names, start=1):
            kind = (name, year == 2021 and name == "p1")
            if kind in ran:
                continue
            ran.add(kind)
            work = tmp_path / f"work {year} {number}"
            work.mkdir()
            _check_output(name, year, hand, f"hw1_{number}.sh", work, checkpoints[name], p1_data, p2_data, office)
    assert len(ran) == 4  # classification with either header, segmentation, self-supervision


def test_the_download_script_fetches_checks_and_keeps_a_good_file(capsys, tmp_path, runs, course_python):
    """Weights served over http: fetched and checked; a good file is left alone; a wrong one is named."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    hand = tmp_path / "hand"
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        code, out, err = run_cli(capsys, "handin", "--year", 2022, "--output", hand, "--runs", runs,
                                 "--url", f"p1={base}/p1.pth", "--url", f"seg={base}/wrong.pth")
        assert code == 0, err
        assert "note: no --url" not in out  # both files have an address
        for name in ("p1.pth", "seg.pth"):
            shutil.copy(hand / name, served / name)
            (hand / name).unlink()
        (served / "wrong.pth").write_bytes(b"not the weights")
        done = run_script(hand, "hw1_download.sh", cwd=tmp_path)
        assert done.returncode == 1
        assert "p1.pth: fetched (" in done.stdout and (hand / "p1.pth").read_bytes() == (served / "p1.pth").read_bytes()
        assert f"seg.pth: the download from {base}/wrong.pth is not the file dlcv handin wrote" in done.stderr
        done = run_script(hand, "hw1_download.sh", "p1", cwd=tmp_path)
        assert done.returncode == 0 and "p1.pth: already here" in done.stdout
    finally:
        server.shutdown()


def test_handin_refuses_what_it_cannot_gather_in_one_line(capsys, tmp_path, runs):
    from conftest import expect_error

    expect_error(capsys, r"no ssl checkpoint for the scripts \(none of .*ssl_table/C/best\.ckpt", "handin", "--year",
                 2024, "--output", tmp_path / "h", "--runs", runs)
    expect_error(capsys, r"--year 2019: choose among 2021, 2022, 2023, 2024", "handin", "--year", 2019,
                 "--output", tmp_path / "h")
    expect_error(capsys, r"--checkpoint p9=\.\.\.: name one of p1, ssl, seg", "handin", "--year", 2021,
                 "--output", tmp_path / "h", "--checkpoint", "p9=x.ckpt")
    expect_error(capsys, r"--checkpoint p1=.*nothing\.ckpt: no such file", "handin", "--year", 2021,
                 "--output", tmp_path / "h", "--runs", runs, "--checkpoint", f"p1={tmp_path / 'nothing.ckpt'}")
    for url in ("ftp://host/p1.pth", "p1.pth", "https://host/p 1.pth", "https://host/$(reboot)"):
        expect_error(capsys, r"--url p1=.*: give an http\(s\) address of the weights file", "handin", "--year",
                     2022, "--output", tmp_path / "h", "--runs", runs, "--url", f"p1={url}")
    expect_error(capsys, r"--url ssl=\.\.\.: the 2022 hand-in grades no ssl problem", "handin", "--year", 2022,
                 "--output", tmp_path / "h", "--runs", runs, "--url", "ssl=https://host/ssl.pth")
    assert not (tmp_path / "h").exists()


def test_a_model_that_cannot_be_plain_torch_is_refused_in_one_line_before_any_file(capsys, tmp_path, runs,
                                                                                 monkeypatch):
    """A forward that branches on a tensor's values cannot be traced to plain torch: refused, nothing written."""
    from conftest import expect_error

    from dlcv.models.small import DlcvNet

    def branching(self, x):
        return self.head(self.forward_features(x)) if x.mean() > 0 else -self.head(self.forward_features(x))

    monkeypatch.setattr(DlcvNet, "forward", branching)
    expect_error(capsys, r"the model branches on the values of a tensor", "handin", "--year", 2022, "--output",
                 tmp_path / "h", "--runs", runs)
    assert not (tmp_path / "h").exists()


def test_the_repository_scripts_take_the_best_run_there_is(tmp_path):
    """``checkpoint VAR NAME CANDIDATE...`` of scripts/common.sh: the variable, else the hand-in folder's file,
    else the first candidate that exists under the repository."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    for run in ("p1_model_a", "p1_model_b_cpu"):
        (repo / "runs" / run).mkdir(parents=True)
        (repo / "runs" / run / "best.ckpt").write_bytes(b"x")
    ask = ("source scripts/common.sh; checkpoint DLCV_P1_CHECKPOINT p1 runs/p1_model_b/best.ckpt "
           "runs/p1_model_b_cpu/best.ckpt runs/p1_model_a/best.ckpt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLCV_")}

    def chosen(**extra) -> str:
        done = subprocess.run(["bash", "-c", ask], cwd=repo, capture_output=True, text=True, env={**env, **extra},
                              check=True)
        return done.stdout.strip()

    assert chosen() == str(repo / "runs" / "p1_model_b_cpu" / "best.ckpt")
    assert chosen(DLCV_P1_CHECKPOINT="/x/y.ckpt") == "/x/y.ckpt"
    (repo / "scripts" / "checkpoints").mkdir()
    (repo / "scripts" / "checkpoints" / "p1.ckpt").write_bytes(b"x")
    assert chosen() == str(repo / "scripts" / "checkpoints" / "p1.ckpt")


@pytest.mark.slow
def test_the_2024_folder_runs_under_torch_2_as_well(capsys, tmp_path, runs, trained_run, office):
    """2024's machine has torch 2.4: its self-supervision script runs under this interpreter's torch 2 too (where
    torch imports modules such as ssl, which a hand-in file of that name would stand in for) and predicts as dlcv."""
    import torch

    from dlcv.ssl import predict as ssl_predict

    assert int(torch.__version__.split(".")[0]) >= 2
    hand = tmp_path / "hand in"
    code, _, err = run_cli(capsys, "handin", "--year", 2024, "--output", hand, "--runs", runs, "--checkpoint",
                           f"ssl={trained_run / 'best.ckpt'}")
    assert code == 0, err
    python3 = Path(sys.executable).parent / "python3"  # this interpreter as the script's python3 (a venv's)
    assert python3.exists()
    done = run_script(hand, "hw1_1.sh", office / "test.csv", office / "test", tmp_path / "out.csv", cwd=tmp_path,
                   path=f"{python3.parent}:/usr/bin:/bin")
    assert done.returncode == 0, done.stderr[-3000:]
    ssl_predict(trained_run / "best.ckpt", office / "test.csv", office / "test", tmp_path / "dlcv.csv")
    assert list(csv.reader(open(tmp_path / "out.csv"))) == list(csv.reader(open(tmp_path / "dlcv.csv")))



@pytest.mark.slow
def test_half_weights_are_float16_where_dlcvs_predictions_on_the_runs_validation_stay(
        capsys, tmp_path, trained_run, seg_run, p1_data, p2_data, office, course_python):
    """--half checks each checkpoint on the images its run validated on (here its validation folders): the tiny
    runs' predictions survive float16, and the script of the halved weights predicts as dlcv does there."""
    import torch

    hand = tmp_path / "hand in"
    code, out, err = run_cli(capsys, "handin", "--year", 2022, "--output", hand, "--half", "--checkpoint",
                             f"p1={trained_run / 'best.ckpt'}", "--checkpoint", f"seg={seg_run / 'best.ckpt'}")
    assert code == 0, err
    assert "(float16: dlcv's predictions of the 16 images it validated on unchanged)" in out
    assert "(float16: dlcv's predictions of the 4 images it validated on unchanged)" in out
    for name in ("p1", "seg"):
        state = torch.load(hand / f"{name}.pth", weights_only=True)
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    for number, name in ((1, "p1"), (2, "seg")):
        work = tmp_path / f"work {name}"
        work.mkdir()
        run = trained_run if name == "p1" else seg_run
        _check_output(name, 2022, hand, f"hw1_{number}.sh", work, run / "best.ckpt", p1_data, p2_data, office)


def test_half_keeps_float32_where_rounding_changes_a_label(capsys, tmp_path, trained_run, seg_run, p1_data):
    """Classes 0 and 1 of the head made the same feature times 1 and 1 + 1e-4, which float16 rounds to one value:
    on every validation image class 1 wins by 1e-4 of a feature, in float16 they tie and class 0 wins. The weights
    stay float32, and the line says how many labels would change."""
    import torch

    from dlcv.classify import load_classifier
    from dlcv.data.augment import prepare_batch

    model, recipe = load_classifier(trained_run / "best.ckpt")
    images = torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB"))
                                        for p in sorted((p1_data / "val_50").glob("*.png"))]))
    with torch.no_grad():  # a feature positive on every image and its mirror (the recipe's flip TTA)
        x = prepare_batch(images, recipe.data)
        lowest = torch.cat([model.forward_features(x), model.forward_features(x.flip(3))]).min(0).values
    j = int(lowest.argmax())
    assert lowest[j] > 0.05
    run = tmp_path / "runs" / "tied"
    run.mkdir(parents=True)
    shutil.copy(trained_run / "resolved.json", run)
    ckpt = torch.load(trained_run / "best.ckpt", weights_only=False)
    head = ckpt["state_dict"]["model.head.weight"]
    head.zero_()
    head[:, j] = -1.0
    head[0, j], head[1, j] = 1.0, 1.0 + 1e-4
    torch.save(ckpt, run / "best.ckpt")
    code, out, err = run_cli(capsys, "handin", "--year", 2022, "--output", tmp_path / "hand", "--half",
                             "--checkpoint", f"p1={run / 'best.ckpt'}", "--checkpoint", f"seg={seg_run / 'best.ckpt'}")
    assert code == 0, err
    assert "(float32: 16 of the 16 images it validated on change label in float16)" in out
    p1 = torch.load(tmp_path / "hand" / "p1.pth", weights_only=True)
    assert {v.dtype for v in p1.values() if v.is_floating_point()} == {torch.float32}


def test_half_keeps_float32_where_the_runs_data_is_not_there_to_check_on(capsys, tmp_path, runs):
    """The runs fixture's checkpoints are copies without their run's resolved.json: nothing to check float16 on."""
    import torch

    code, out, err = run_cli(capsys, "handin", "--year", 2022, "--output", tmp_path / "hand", "--runs", runs, "--half")
    assert code == 0, err
    assert out.count("(float32: the run's data (not recorded) is not here to check float16 on)") == 2
    state = torch.load(tmp_path / "hand" / "seg.pth", weights_only=True)
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}


def _with_model(run: Path, spec: dict, path: Path, kind: str) -> Path:
    """``run``'s checkpoint with its model replaced by ``spec`` (``{name, args}``) at random weights, at ``path``."""
    import torch

    from dlcv.models.registry import create_model

    ckpt = torch.load(run / "best.ckpt", weights_only=False)
    ckpt["hyper_parameters"]["model"] = spec
    torch.manual_seed(0)
    classes = 7 if kind == "segment" else ckpt["hyper_parameters"]["num_classes"]
    model = create_model(spec["name"], num_classes=classes, task=kind, **spec["args"])
    ckpt["state_dict"] = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save(ckpt, path)
    return path


@pytest.mark.slow
def test_a_transformer_and_a_convnext_hand_in_and_predict_as_dlcv_on_the_course_torch(
        capsys, tmp_path, trained_run, seg_run, p1_data, p2_data, office, course_python):
    """A Segformer (attention, smp's) and a ConvNeXt (timm's) hand in for 2022 and predict under Debian's torch 1.13
    as dlcv does under its own: the scripts' code holds no operation torch 1.13 lacks."""
    p1 = _with_model(trained_run, {"name": "timm", "args": {"arch": "convnext_atto"}}, tmp_path / "p1.ckpt",
                     "classify")
    seg = _with_model(seg_run, {"name": "smp", "args": {"arch": "Segformer", "encoder": "mit_b0"}},
                      tmp_path / "seg.ckpt", "segment")
    hand = tmp_path / "hand"
    code, out, err = run_cli(capsys, "handin", "--year", 2022, "--output", hand, "--checkpoint", f"p1={p1}",
                             "--checkpoint", f"seg={seg}")
    assert code == 0, err
    assert "it needs only torch 1.12 or later (the 2022 course's), numpy and Pillow" in out
    assert "scaled_dot_product_attention" not in (hand / "seg_model.py").read_text()
    for number, name, checkpoint in ((1, "p1", p1), (2, "seg", seg)):
        work = tmp_path / f"work {name}"
        work.mkdir()
        _check_output(name, 2022, hand, f"hw1_{number}.sh", work, checkpoint, p1_data, p2_data, office)
