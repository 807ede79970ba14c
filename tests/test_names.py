"""Names that are not UTF-8 (a byte such as 0xff in a folder or file name): refused at the start in one line,
the same words in every command, nothing written."""

from __future__ import annotations

import os
import re
import shutil

import numpy as np
import pytest
from conftest import TINY_RECIPE, expect_error, run_cli
from PIL import Image

from dlcv.errors import DlcvError
from dlcv.files import list_images, satellite_tiles
from dlcv.report.discovery import discover_runs

BAD = os.fsdecode(b"bad\xff")  # Python's name for the bytes: 'bad\udcff'
SAID = re.escape(repr(BAD)[1:-1]) + r"[^']*': not a UTF-8 name; rename it$"  # the line's end, the name escaped


def written(root) -> list[str]:
    """Every path under ``root``, relative, sorted (the test's own inputs included)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def png(path, value: int = 0) -> None:
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


@pytest.mark.parametrize("args", [
    ("classify", "fit", "--config", "{recipe}", "--data", "{bad}", "--runs-dir", "{tmp}/runs"),
    ("classify", "fit", "--config", "{recipe}", "--data", "{tmp}", "--runs-dir", "{bad}"),
    ("report", "--runs", "{bad}", "--output", "{tmp}/report", "--no-pdf"),
    ("report", "--runs", "{tmp}", "--output", "{bad}", "--no-pdf"),
    ("data", "synth", "--output", "{bad}"),
    ("segment", "evaluate", "--predictions", "{tmp}", "--labels", "{tmp}", "--breakdown", "{bad}.csv"),
    ("export", "{bad}.ckpt", "--output", "{tmp}/plain"),
    ("classify", "fit", "--config", "{recipe}", "--data", "{tmp}", "--name", BAD),
])
def test_a_path_argument_that_is_not_utf8_is_one_line_and_nothing_is_written(capsys, tmp_path, recipe, args):
    os.mkdir(tmp_path / BAD)
    before = written(tmp_path)
    line = expect_error(capsys, SAID, *(a.format(recipe=recipe, bad=tmp_path / BAD, tmp=tmp_path) for a in args))
    assert "\\udcff" in line
    assert written(tmp_path) == before


def test_an_image_in_a_data_folder_whose_name_is_not_utf8_is_named(capsys, tmp_path):
    for split in ("train_50", "val_50"):
        (tmp_path / "p1" / split).mkdir(parents=True)
        for label in range(2):
            png(tmp_path / "p1" / split / f"{label}_0.png", label)
    png(tmp_path / "p1" / "train_50" / f"1_{BAD}.png")
    before = written(tmp_path)
    line = expect_error(capsys, SAID, "data", "transfer-split", "--p1", tmp_path / "p1", "--output", tmp_path / "out")
    assert "train_50/1_bad\\udcff.png" in line
    assert written(tmp_path) == before


def test_a_mask_whose_name_is_not_utf8_writes_no_breakdown(capsys, tmp_path):
    for folder in ("pred", "truth"):
        (tmp_path / folder).mkdir()
        png(tmp_path / folder / "0000_mask.png", 255)
    png(tmp_path / "pred" / f"{BAD}_mask.png", 255)
    line = expect_error(capsys, SAID, "segment", "evaluate", "--predictions", tmp_path / "pred", "--labels",
                        tmp_path / "truth", "--breakdown", tmp_path / "iou.csv")
    assert "pred/bad\\udcff_mask.png" in line
    assert not (tmp_path / "iou.csv").exists()


def test_a_satellite_tile_whose_name_is_not_utf8_is_named(tmp_path):
    png(tmp_path / "0000_sat.jpg")
    png(tmp_path / f"{BAD}_sat.jpg")
    with pytest.raises(DlcvError, match=SAID):
        satellite_tiles(tmp_path)
    shutil.move(tmp_path / f"{BAD}_sat.jpg", tmp_path / f"{BAD}.png")
    with pytest.raises(DlcvError, match=SAID):
        list_images(tmp_path)


def test_a_run_folder_whose_name_is_not_utf8_is_left_out_with_one_note(capsys, tmp_path):
    for name in ("good", BAD):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "recipe.yaml").write_text(TINY_RECIPE)
        (tmp_path / "runs" / name / "metrics.csv").write_text("epoch,train_loss\n0,1.0\n")
    runs, notes = discover_runs(tmp_path / "runs")
    assert [r.path.name for r in runs] == ["good"]
    assert len(notes) == 1 and re.search(SAID, notes[0]), notes
    shutil.rmtree(tmp_path / "runs" / "good")
    expect_error(capsys, r"no run folders with metrics .*; left out .*" + SAID, "report", "--runs",
                 tmp_path / "runs", "--output", tmp_path / "report", "--no-pdf")
    assert not (tmp_path / "report").exists()


def test_a_recipe_that_names_a_run_or_data_folder_not_in_utf8_is_one_line(capsys, tmp_path, recipe):
    named = tmp_path / "named.yaml"
    named.write_text(TINY_RECIPE.replace("name: tiny", 'name: "bad\\udcff"'))
    expect_error(capsys, r"bad\\udcff", "classify", "fit", "--config", named, "--data", tmp_path, "--runs-dir",
                 tmp_path / "runs")
    data = tmp_path / "data.yaml"
    data.write_text(TINY_RECIPE.replace("data: {", 'data: {train: "bad\\udcff", '))
    expect_error(capsys, r"bad\\udcff", "classify", "fit", "--config", data, "--data", tmp_path, "--runs-dir",
                 tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_an_error_line_holding_an_undecodable_name_is_printed_escaped(capsys, monkeypatch):
    from dlcv.cli import commands

    def fails(args):
        raise DlcvError(f"{BAD}: gone")

    monkeypatch.setattr(commands, "models", fails)
    code, _, err = run_cli(capsys, "models")
    assert code == 2 and err == "dlcv: error: bad\\udcff: gone\n"
