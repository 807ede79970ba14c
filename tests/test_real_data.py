"""A short smoke test on a slice of the real p1 data (read from ../shared/data)."""

from __future__ import annotations

import shutil

import pytest
from conftest import REAL_P1, run_cli

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def real_slice(tmp_path_factory):
    if not REAL_P1.is_dir():
        pytest.skip("the course data is not at ../shared/data")
    root = tmp_path_factory.mktemp("real") / "p1_data"
    for split, indices in (("train_50", range(30)), ("val_50", range(450, 460))):
        (root / split).mkdir(parents=True)
        for cls in range(5):
            for i in indices:
                shutil.copy(REAL_P1 / split / f"{cls}_{i}.png", root / split)
    rows = [l for l in (REAL_P1 / "val_gt.csv").read_text().splitlines()[1:]
            if int(l.split(",")[1]) < 5 and 450 <= int(l.split("_")[1].split(".")[0]) < 460]
    (root / "val_gt.csv").write_text("filename,label\n" + "\n".join(rows) + "\n")
    return root


def test_real_val_gt_names_every_validation_image_once():
    if not REAL_P1.is_dir():
        pytest.skip("the course data is not at ../shared/data")
    from dlcv.data.p1 import read_image_folder

    images = read_image_folder(REAL_P1 / "val_50", REAL_P1 / "val_gt.csv")
    assert len(images.files) == 2500 and sorted(set(images.labels.tolist())) == list(range(50))


def test_fit_predict_evaluate_on_a_slice_of_the_real_data(capsys, real_slice, recipe, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", real_slice,
                             "--runs-dir", runs, "--set", "data.holdout=0.2")
    assert code == 0, err
    assert "val_50 accuracy of the best checkpoint" in out
    pred = tmp_path / "pred.csv"
    assert run_cli(capsys, "classify", "predict", "--checkpoint", runs / "tiny" / "best.ckpt",
                   "--images", real_slice / "val_50", "--output", pred)[0] == 0
    code, out, _ = run_cli(capsys, "classify", "evaluate", "--predictions", pred, "--labels",
                           real_slice / "val_gt.csv")
    assert code == 0 and out.strip().splitlines()[-1].startswith("accuracy: ")
    assert len(pred.read_text().splitlines()) == 51
