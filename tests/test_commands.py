"""Commands and options that had no end-to-end test: each run as a user does, its output checked against what
it must be, and its bad input refused in one line."""

from __future__ import annotations

import csv
import re
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE, expect_error, run_cli
from PIL import Image
from test_ssl import TINY_BYOL, TINY_FINETUNE

from dlcv.files import written_by_dlcv
from dlcv.models.registry import list_models


def test_models_lists_every_registered_model_under_its_task(capsys):
    code, out, err = run_cli(capsys, "models")
    assert code == 0, err
    listed = set(re.findall(r"^  (\w+)\s", out, flags=re.M))
    assert listed == set(list_models("classify")) | set(list_models("segment"))
    assert out.startswith("classify:") and "\nsegment:" in out


@pytest.fixture(scope="module")
def top3_run(tmp_path_factory, p1_data):
    """A tiny run keeping its 3 best checkpoints."""
    from dlcv.cli.main import main

    base = tmp_path_factory.mktemp("top3")
    (base / "r.yaml").write_text(TINY_RECIPE.replace("epochs: 2", "epochs: 3, save_top_k: 3"))
    assert main(["classify", "fit", "--config", str(base / "r.yaml"), "--data", str(p1_data),
                 "--runs-dir", str(base / "runs")]) == 0
    return base / "runs" / "tiny"


def _labels(path) -> dict[str, int]:
    with open(path, newline="") as handle:
        return {r["filename"]: int(r["label"]) for r in csv.DictReader(handle)}


def test_predict_with_an_ensemble_averages_the_best_checkpoints(capsys, tmp_path, top3_run, p1_data):
    from dlcv.classify import ensemble_checkpoints, load_classifier, predict_scores
    from dlcv.data.images import load_image_stack
    from dlcv.files import list_images

    code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", top3_run / "best.ckpt", "--images",
                           p1_data / "val_50", "--output", tmp_path / "e.csv", "--ensemble", "3")
    assert code == 0, err
    files = list_images(p1_data / "val_50")
    images = load_image_stack(files, use_cache=False)
    paths = ensemble_checkpoints(top3_run / "best.ckpt", 3)
    assert len(paths) == 3
    total = sum(predict_scores(model, images, recipe) for model, recipe in map(load_classifier, paths))
    assert _labels(tmp_path / "e.csv") == {f.name: int(v) for f, v in zip(files, total.argmax(1))}
    expect_error(capsys, r"--ensemble 9: .*top holds 3 checkpoint\(s\); train with train\.save_top_k >= 9",
                 "classify", "predict", "--checkpoint", top3_run / "best.ckpt",
                 "--images", p1_data / "val_50", "--output", tmp_path / "f.csv", "--ensemble", "9")
    stray = top3_run / "top" / "copy.ckpt"  # a file the user put there: one line, not a traceback
    shutil.copy(paths[0], stray)
    try:
        expect_error(capsys, r"copy\.ckpt: not a checkpoint dlcv kept \(its name does not end with -SCORE\); move it "
                             r"out of .*top for --ensemble", "classify", "predict", "--checkpoint",
                     top3_run / "best.ckpt", "--images", p1_data / "val_50", "--output", tmp_path / "g.csv",
                     "--ensemble", "3")
    finally:
        stray.unlink()


@pytest.mark.parametrize("tta", ["none", "flip", "flip_shift"])
def test_predict_takes_each_test_time_augmentation(capsys, tmp_path, trained_run, p1_data, tta):
    from dlcv.classify import load_classifier
    from dlcv.data.augment import prepare_batch
    from dlcv.data.images import load_image_stack
    from dlcv.files import list_images
    from dlcv.runtime import inference_autocast
    from dlcv.tta import predict_logits

    code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images",
                           p1_data / "val_50", "--output", tmp_path / "p.csv", "--tta", tta)
    assert code == 0, err
    model, recipe = load_classifier(trained_run / "best.ckpt")
    files = list_images(p1_data / "val_50")
    x = prepare_batch(torch.as_tensor(load_image_stack(files, use_cache=False)), recipe.data)
    with torch.no_grad(), inference_autocast(torch.device("cpu"), recipe.train.precision):  # as predict runs
        want = predict_logits(model.eval(), x, tta).float().softmax(1).argmax(1)
    assert _labels(tmp_path / "p.csv") == {f.name: int(v) for f, v in zip(files, want)}


def test_evaluate_counts_a_colour_in_no_class_as_unknown_or_refuses_it(capsys, tmp_path, p2_data):
    import shutil

    labels = tmp_path / "labels"
    shutil.copytree(p2_data / "validation", labels)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for mask in labels.glob("*_mask.png"):
        shutil.copy(mask, predictions / mask.name)
    first = sorted(predictions.glob("*_mask.png"))[0]
    pixels = np.asarray(Image.open(first)).copy()
    pixels[:2, :3] = (255, 0, 0)  # red: the course's script leaves it undefined
    Image.fromarray(pixels).save(first)
    code, out, err = run_cli(capsys, "segment", "evaluate", "--predictions", predictions, "--labels", labels)
    assert code == 0, err
    assert f"note: {first}: 6 pixel(s) of a colour in no class (red), counted as Unknown" in out
    expect_error(capsys, rf"{re.escape(first.name)}.*(red|colour)", "segment", "evaluate", "--predictions",
                 predictions, "--labels", labels, "--unmapped", "error")


@pytest.mark.parametrize("alpha", ["0", "1"])
def test_overlay_alpha_is_the_masks_opacity(capsys, tmp_path, p2_data, alpha):
    from dlcv.data.masks import MaskCodec

    image, mask = p2_data / "validation" / "0000_sat.jpg", p2_data / "validation" / "0000_mask.png"
    code, _, err = run_cli(capsys, "segment", "overlay", "--image", image, "--mask", mask, "--output",
                           tmp_path / "o.png", "--alpha", alpha)
    assert code == 0, err
    drawn = np.asarray(Image.open(tmp_path / "o.png").convert("RGB")).astype(int)
    inside = (drawn != 0).any(-1)  # outlines are black
    if alpha == "0":  # the image itself where no outline is drawn
        assert np.abs(drawn[inside] - np.asarray(Image.open(image).convert("RGB")).astype(int)[inside]).max() <= 1
    else:  # the class colours
        truth = MaskCodec.encode(MaskCodec().decode(np.asarray(Image.open(mask))))
        assert (drawn[inside] == truth[inside]).all()
    expect_error(capsys, r"--alpha must lie in 0\.\.1, got 1\.5", "segment", "overlay", "--image", image, "--mask",
                 mask, "--output", tmp_path / "p.png", "--alpha", "1.5")


@pytest.mark.slow
def test_ssl_pretrain_finetune_and_export_through_the_command_line(capsys, tmp_path, ssl_data):
    """BYOL, then setting C's fine-tuning from its trunk, then the fine-tuned trunk exported: each a command."""
    import torchvision

    (tmp_path / "byol.yaml").write_text(TINY_BYOL)
    (tmp_path / "ft.yaml").write_text(TINY_FINETUNE)
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "ssl", "pretrain", "--config", tmp_path / "byol.yaml", "--data",
                             ssl_data / "mini" / "train", "--runs-dir", runs)
    assert code == 0, err
    byol = next(p for p in runs.iterdir() if (p / "backbone.pt").is_file())
    code, out, err = run_cli(capsys, "ssl", "finetune", "--setting", "C", "--backbone", byol / "backbone.pt",
                             "--data", ssl_data / "office", "--config", tmp_path / "ft.yaml", "--runs-dir", runs)
    assert code == 0, err
    finetuned = runs / "tiny_finetune"
    assert (finetuned / "best.ckpt").is_file()
    code, out, err = run_cli(capsys, "ssl", "export", "--checkpoint", finetuned / "best.ckpt", "--output",
                             tmp_path / "trunk.pt")
    assert code == 0, err
    assert written_by_dlcv(tmp_path / "trunk.pt")  # listed in its folder's manifest: a rerun may replace it
    trunk = torchvision.models.resnet18()
    state = torch.load(tmp_path / "trunk.pt", map_location="cpu")
    trunk.load_state_dict(state, strict=True)
    expect_error(capsys, r"--setting|setting", "ssl", "finetune", "--setting", "F", "--data", ssl_data / "office",
                 "--runs-dir", runs)


def test_handin_replaces_its_folder_only_with_overwrite(capsys, tmp_path, trained_run, seg_run):
    args = ("handin", "--year", "2022", "--output", tmp_path / "h", "--checkpoint",
            f"p1={trained_run / 'best.ckpt'}", "--checkpoint", f"seg={seg_run / 'best.ckpt'}")
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    first = (tmp_path / "h" / "p1.pth").read_bytes()
    expect_error(capsys, r"already holds a hand-in folder; pass --overwrite", *args)
    code, _, err = run_cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert (tmp_path / "h" / "p1.pth").read_bytes() == first  # the same checkpoint, the same weights file


def test_a_folder_of_the_wrong_kind_says_what_it_looks_like_and_what_is_wanted(capsys, tmp_path, recipe, p1_data,
                                                                              p2_data, trained_run, seg_run):
    p1_kind = r"Problem 1's classification data \(train_50/ and val_50/ of CLASS_INDEX\.png\)"
    satellite = r"the satellite set \(train/ and validation/ of NNNN_sat\.jpg with NNNN_mask\.png\)"
    cases = [
        (rf"looks like {satellite}; this command wants {p1_kind}",
         ("classify", "fit", "--config", recipe, "--data", p2_data, "--runs-dir", tmp_path / "runs")),
        (rf"looks like {p1_kind}; this command wants {satellite}",
         ("segment", "fit", "--config", seg_run / "recipe.yaml", "--data", p1_data, "--runs-dir", tmp_path / "runs")),
        (r"looks like a folder of satellite tiles \(NNNN_sat\.jpg\); this command wants a folder of Problem 1 images",
         ("classify", "predict", "--checkpoint", trained_run / "best.ckpt", "--images", p2_data / "validation",
          "--output", tmp_path / "p.csv")),
        (r"looks like a folder of Problem 1 images \(CLASS_INDEX\.png\); this command wants a folder of satellite",
         ("segment", "predict", "--checkpoint", seg_run / "best.ckpt", "--images", p1_data / "val_50", "--output",
          tmp_path / "masks")),
    ]
    for pattern, args in cases:
        expect_error(capsys, pattern, *args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing written


def test_a_new_task_is_its_modules_and_one_registry_line(monkeypatch, capsys):
    """The worked example of docs/contributing.md: a task's command group and report section come from its own
    modules once its line is in ``dlcv.registry.TASKS``; the CLI and the report need no other edit."""
    import importlib
    import sys
    import types

    from dlcv import registry
    from dlcv.cli import options
    from dlcv.report import sections

    said = []
    commands = types.ModuleType("dlcv.cli.toy")
    commands.add = lambda group: options.command(options.group(group, "toy", "a toy task"), "hello",
                                                 lambda args: said.append(args.who), "say hello").add_argument("--who")
    section = types.ModuleType("dlcv.report.sections.toys")
    section.build = lambda runs, ctx: None
    monkeypatch.setitem(sys.modules, "dlcv.cli.toy", commands)
    monkeypatch.setitem(sys.modules, "dlcv.report.sections.toys", section)
    monkeypatch.setattr(registry, "TASKS", (*registry.TASKS, registry.Task("toy", "toys")))
    try:
        code, _, err = run_cli(capsys, "toy", "hello", "--who", "you")
        assert code == 0 and said == ["you"], err
        assert list(importlib.reload(sections).SECTIONS)[-1] == "toys"
    finally:
        monkeypatch.undo()
        importlib.reload(sections)
    assert "toys" not in sections.SECTIONS


def test_each_suite_worker_computes_on_its_share_of_the_cores():
    """Two workers each running torch on every core oversubscribe the CPU (conftest.share_cores)."""
    import torch
    from conftest import SHARED_THREADS

    if SHARED_THREADS is not None:
        assert torch.get_num_threads() == SHARED_THREADS
