"""dlcv sam: automatic masks and refinement, on a tiny SAM built from segment-anything's own modules
with random weights (no SAM weights can be downloaded here)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, run_dlcv
from PIL import Image
from pycocotools import mask as mask_utils

from dlcv.data.masks import MaskCodec, read_mask, write_mask
from dlcv.data.synth import synth_p2
from dlcv.errors import DlcvError
from dlcv.models.sam import build_sam, load_sam, mask_generator
from dlcv.sam import SamRunner, decode_rle, refine_classes, sam_recipe

# Random weights predict IoUs near 0 and unstable masks: the filters are opened so that masks come out.
OPEN_FILTERS = ("--set", "generator.pred_iou_thresh=0", "--set", "generator.stability_score_thresh=0",
                "--set", "generator.points_per_side=4")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
    torch.save(build_sam("vit_tiny").state_dict(), path)
    return path


@pytest.fixture(scope="module")
def satellite(tmp_path_factory):
    """Two 64x64 validation pairs in the course's layout."""
    return synth_p2(tmp_path_factory.mktemp("p2"), train=1, validation=2, size=64) / "validation"


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def test_masks_writes_valid_rle_overlays_figure_and_summary(tiny_checkpoint, satellite, tmp_path):
    out = tmp_path / "sam_out"
    result = run_dlcv("sam", "masks", "--checkpoint", tiny_checkpoint, "--model", "vit_tiny", "--images", satellite,
                      "--output", out, *OPEN_FILTERS)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model_type"] == "vit_tiny" and summary["images"] == 2
    assert summary["generator"]["points_per_side"] == 4 and summary["generator"]["pred_iou_thresh"] == 0
    for name in ("0000", "0001"):
        records = json.loads((out / f"{name}.json").read_text())
        assert len(records) == summary["masks"][name] >= 1
        for record in records:
            mask = decode_rle(record["segmentation"])
            assert mask.shape == (64, 64)
            assert record["area"] == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]
            assert {"predicted_iou", "stability_score", "point_coords", "crop_box"} <= set(record)
        image = np.asarray(Image.open(satellite / f"{name}_sat.jpg").convert("RGB"))
        overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
        assert overlay.shape == image.shape and not np.array_equal(overlay, image)
    assert (out / "figure.png").stat().st_size > 0 and (out / "recipe.yaml").is_file()
    assert summary["figure_images"] == ["0000", "0001"]  # the reports' ids are absent: the first ones


def test_masks_of_the_images_asked_for_alone(tiny_checkpoint, satellite, tmp_path, capsys):
    from conftest import expect_error

    out = tmp_path / "sam_out"
    result = run_dlcv("sam", "masks", "--checkpoint", tiny_checkpoint, "--model", "vit_tiny", "--images", satellite,
                      "--output", out, "--only", "0001", *OPEN_FILTERS)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "summary.json").read_text())["images"] == 1
    assert sorted(p.name for p in out.glob("*.json") if p.name != "summary.json") == ["0001.json"]
    expect_error(capsys, r"--only 0001,0777: .* has no 0777_sat\.jpg", "sam", "masks", "--checkpoint",
                 tiny_checkpoint, "--model", "vit_tiny", "--images", satellite, "--output", tmp_path / "o2",
                 "--only", "0001,0777")
    assert not (tmp_path / "o2").exists()


def test_missing_checkpoint_names_the_file_of_the_model_type_and_where_it_is_published(capsys, satellite, tmp_path):
    code, _, err = run_cli(capsys, "sam", "masks", "--checkpoint", tmp_path / "sam.pth", "--model", "vit_b",
                           "--images", satellite, "--output", tmp_path / "out")
    assert code == 2
    assert "sam_vit_b_01ec64.pth" in err and "https://dl.fbaipublicfiles.com/segment_anything/" in err
    assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_model_type_is_refused(tiny_checkpoint):
    torch.manual_seed(0)
    with pytest.raises(DlcvError, match="not a SAM vit_b checkpoint"):
        load_sam(tiny_checkpoint, "vit_b")


def test_recipe_knobs_reach_the_generator(tiny_checkpoint, tmp_path):
    recipe_file = tmp_path / "knobs.yaml"
    recipe_file.write_text("generator: {points_per_side: 6, points_per_batch: 7, pred_iou_thresh: 0.5, "
                           "stability_score_thresh: 0.6, stability_score_offset: 2.0, box_nms_thresh: 0.4, "
                           "crop_n_layers: 1, crop_nms_thresh: 0.3, crop_overlap_ratio: 0.25, "
                           "crop_n_points_downscale_factor: 2, min_mask_region_area: 9}\nprefilter: true\n")
    recipe = sam_recipe(recipe_file, ("generator.box_nms_thresh=0.45",), model_type="vit_tiny")
    generator = SamRunner(tiny_checkpoint, recipe, device="cpu").generator
    assert (generator.points_per_batch, generator.pred_iou_thresh, generator.stability_score_thresh) == (7, 0.5, 0.6)
    assert (generator.stability_score_offset, generator.box_nms_thresh, generator.crop_n_layers) == (2.0, 0.45, 1)
    assert (generator.crop_nms_thresh, generator.crop_overlap_ratio) == (0.3, 0.25)
    assert (generator.crop_n_points_downscale_factor, generator.min_mask_region_area) == (2, 9)
    assert generator.predictor.iou_floor == 0.5 and generator.output_mode == "coco_rle"  # prefilter: true
    assert [len(g) for g in generator.point_grids] == [36, 9]  # layer 1: 6 / 2 points per side


def test_official_recipe_holds_every_generator_knob_at_segment_anythings_default():
    import inspect

    from segment_anything import SamAutomaticMaskGenerator

    signature = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    package_defaults = {k: p.default for k, p in signature.items() if k not in ("self", "model", "point_grids",
                                                                               "output_mode")}
    assert sam_recipe(REPO / "configs/sam/official.yaml").generator.model_dump() == pytest.approx(package_defaults)
    fast = sam_recipe(REPO / "configs/sam/fast.yaml")
    assert fast.prefilter and fast.generator.points_per_side == 16


def test_bad_knob_is_refused_before_any_work(tiny_checkpoint):
    with pytest.raises(DlcvError, match="generator.points_per_side"):
        sam_recipe(None, ("generator.points_per_side=0",))
    with pytest.raises(DlcvError, match="generator.pred_iou_thresh"):
        sam_recipe(None, ("generator.pred_iou_thresh=1.5",))


def test_prefilter_keeps_the_official_generators_masks(tiny_checkpoint, satellite):
    model = load_sam(tiny_checkpoint, "vit_tiny")
    image = np.asarray(Image.open(satellite / "0000_sat.jpg").convert("RGB"))
    knobs = {"points_per_side": 4, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    everything = mask_generator(model, {**knobs, "pred_iou_thresh": 0.0}).generate(image)
    # A threshold at the median positive predicted IoU (segment-anything skips a threshold of 0 or
    # less): more than half the masks are dropped before up-sampling.
    positive = [r["predicted_iou"] for r in everything if r["predicted_iou"] > 0]
    assert len(positive) >= 4
    knobs["pred_iou_thresh"] = float(np.median(positive))
    official = mask_generator(model, knobs).generate(image)
    ours = mask_generator(model, knobs, prefilter=True).generate(image)
    assert 0 < len(official) < len(everything)
    assert [r["segmentation"] for r in ours] == [r["segmentation"] for r in official]
    assert [r["predicted_iou"] for r in ours] == pytest.approx([r["predicted_iou"] for r in official])
    assert [r["stability_score"] for r in ours] == pytest.approx([r["stability_score"] for r in official])


def test_the_generator_reaches_segment_anything_through_public_methods_only():
    """Overriding a private method (``_process_batch``) broke silently when segment-anything changed it."""
    import ast
    import inspect

    import dlcv.models.sam

    tree = ast.parse(inspect.getsource(dlcv.models.sam))
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    private = sorted(name for name in defined if name.startswith("_") and not name.startswith("__"))
    used = sorted({node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and node.attr.startswith("_") and not node.attr.startswith("__")})
    assert private == [] and used == []


def test_region_that_is_70_percent_class_1_becomes_all_class_1():
    classes = np.full((10, 10), 3, dtype=np.uint8)
    region = np.zeros((10, 10), dtype=bool)
    region[:5, :4] = True  # 20 pixels: 14 of class 1, 6 of class 2
    classes[:5, :4] = 1
    classes[:2, :3] = 2
    refined, used = refine_classes(classes, [(region, 0.95)], min_predicted_iou=0.88)
    assert used == 1
    assert (refined[region] == 1).all()
    assert (refined[~region] == 3).all()  # outside every region nothing changes


def test_regions_under_the_predicted_iou_threshold_change_nothing():
    classes = np.zeros((8, 8), dtype=np.uint8)
    classes[0, 0] = 4
    region = np.ones((8, 8), dtype=bool)
    refined, used = refine_classes(classes, [(region, 0.5)], min_predicted_iou=0.88)
    assert used == 0 and np.array_equal(refined, classes)


def test_smaller_region_inside_a_larger_one_keeps_its_own_majority():
    classes = np.full((10, 10), 1, dtype=np.uint8)
    classes[:3, :3] = 4
    classes[0, 0] = 1  # inner region: 8 water, 1 agriculture
    outer = np.ones((10, 10), dtype=bool)
    inner = np.zeros((10, 10), dtype=bool)
    inner[:3, :3] = True
    refined, _ = refine_classes(classes, [(inner, 0.9), (outer, 0.9)], min_predicted_iou=0.88)
    assert (refined[inner] == 4).all() and (refined[~inner] == 1).all()


def test_refine_from_sam_masks_reports_miou_before_and_after(capsys, tmp_path):
    truth_dir, pred_dir, sam_dir = (tmp_path / n for n in ("truth", "pred", "sam"))
    for folder in (truth_dir, pred_dir, sam_dir):
        folder.mkdir()
    truth = np.full((16, 16), 1, dtype=np.uint8)
    truth[:, 8:] = 4  # left half agriculture, right half water
    predicted = truth.copy()
    predicted[0:3, 9:14] = 1  # 15 of the 128 water pixels predicted as agriculture
    write_mask(truth_dir / "0000_mask.png", truth)
    write_mask(pred_dir / "0000_mask.png", predicted)
    right = np.zeros((16, 16), dtype=bool)
    right[:, 8:] = True
    records = [{"segmentation": _rle(right), "predicted_iou": 0.93},
               {"segmentation": _rle(~right), "predicted_iou": 0.5}]
    (sam_dir / "0000.json").write_text(json.dumps(records))
    code, out, err = run_cli(capsys, "sam", "refine", "--sam-masks", sam_dir, "--predictions", pred_dir,
                             "--labels", truth_dir, "--output", tmp_path / "refined")
    assert code == 0, err
    assert np.array_equal(read_mask(tmp_path / "refined" / "0000_mask.png", MaskCodec()), truth)
    report = json.loads((tmp_path / "refined" / "refine.json").read_text())
    # before: agriculture 128 / 143, water 113 / 128; the other four classes are absent (nan).
    assert report["iou_before"][1] == pytest.approx(128 / 143) and report["iou_before"][4] == pytest.approx(113 / 128)
    assert report["iou_after"][1] == 1.0 and report["iou_after"][4] == 1.0
    assert report["per_image"]["0000"] == {"regions": 2, "regions_used": 1, "pixels_changed": 15}
    assert "mean_iou before" in out and "mean_iou after" in out


def test_refine_with_a_checkpoint_runs_sam_on_the_images(tiny_checkpoint, satellite, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sam", "refine", "--checkpoint", tiny_checkpoint, "--model", "vit_tiny",
                           "--images", satellite, "--predictions", satellite, "--labels", satellite,
                           "--output", tmp_path / "refined", *OPEN_FILTERS, "--set", "refine.min_predicted_iou=-1")
    assert code == 0, err
    report = json.loads((tmp_path / "refined" / "refine.json").read_text())
    assert report["mean_iou_before"] == 1.0  # the ground truth itself as the prediction
    assert all(v["regions_used"] == v["regions"] >= 1 for v in report["per_image"].values())
    assert sorted(p.name for p in (tmp_path / "refined").glob("*_mask.png")) == ["0000_mask.png", "0001_mask.png"]


def test_refine_names_predictions_without_sam_masks(capsys, satellite, tmp_path):
    (tmp_path / "sam").mkdir()
    code, _, err = run_cli(capsys, "sam", "refine", "--sam-masks", tmp_path / "sam", "--predictions", satellite,
                           "--output", tmp_path / "refined")
    assert code == 2 and "0000.json" in err and "0001.json" in err
    assert not (tmp_path / "refined").exists()


@pytest.mark.parametrize(("args", "pattern"), [
    ([], r"give either --checkpoint \(with --images\) to run SAM, or --sam-masks"),
    (["--checkpoint", "sam.pth", "--images", "img", "--sam-masks", "sam"], r"give either --checkpoint"),
    (["--checkpoint", "sam.pth"], r"--checkpoint needs --images"),
])
def test_refine_takes_sam_from_exactly_one_source(capsys, satellite, tmp_path, args, pattern):
    from conftest import expect_error

    expect_error(capsys, pattern, "sam", "refine", "--predictions", satellite, "--output", tmp_path / "refined", *args)
    assert not (tmp_path / "refined").exists()


def test_refine_overwrite_replaces_an_earlier_refinement(capsys, satellite, tmp_path):
    from conftest import expect_error

    sam_dir = tmp_path / "sam"
    sam_dir.mkdir()
    for name in ("0000", "0001"):
        every = np.ones(read_mask(satellite / f"{name}_mask.png", MaskCodec()).shape, dtype=bool)
        (sam_dir / f"{name}.json").write_text(json.dumps([{"segmentation": _rle(every), "predicted_iou": 0.9}]))
    args = ("sam", "refine", "--sam-masks", sam_dir, "--predictions", satellite, "--output", tmp_path / "refined")
    assert run_cli(capsys, *args)[0] == 0
    expect_error(capsys, r"refined.*--overwrite", *args)
    code, _, err = run_cli(capsys, *args, "--overwrite", "--set", "refine.min_predicted_iou=0.95")
    assert code == 0, err
    report = json.loads((tmp_path / "refined" / "refine.json").read_text())
    assert all(v["regions_used"] == 0 for v in report["per_image"].values())  # the second run's rule


def test_every_sam_type_a_recipe_may_name_has_a_checkpoint_file_or_is_the_tiny_one():
    from dlcv.models.sam import CHECKPOINT_FILES, TINY
    from dlcv.recipes import SAM_TYPES

    assert set(SAM_TYPES) == {*CHECKPOINT_FILES, TINY}
