"""Problem 2: mask codec, graded mIoU, pairing, augmentation, models, and the commands end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REAL_P2, TINY_SEG_RECIPE, expect_error, run_cli
from PIL import Image

from dlcv.cli.main import main
from dlcv.data.masks import CLASS_COLOURS, UNKNOWN, MaskCodec
from dlcv.data.p2 import find_pairs
from dlcv.errors import DlcvError
from dlcv.metrics.segmentation import class_iou, confusion, mean_iou


# --- codec ---------------------------------------------------------------------------------------------
def test_codec_round_trips_every_colour_and_thresholds_at_128():
    classes = np.arange(7, dtype=np.uint8).reshape(1, 7)
    rgb = MaskCodec.encode(classes)
    assert (rgb[0] == CLASS_COLOURS).all()
    assert (MaskCodec().decode(rgb) == classes).all()
    # Off-table shades fall to the class of their thresholded bits, exactly as the course's script.
    shades = np.array([[[128, 127, 200], [127, 128, 128], [255, 255, 127], [0, 0, 0]]], dtype=np.uint8)
    assert MaskCodec().decode(shades).tolist() == [[2, 0, 1, 6]]


def test_red_is_unknown_by_default_and_an_error_when_asked():
    rgb = np.zeros((2, 2, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    assert MaskCodec().decode(rgb)[0, 0] == UNKNOWN
    with pytest.raises(DlcvError, match=r"m\.png: 1 pixel\(s\) of a colour in no class"):
        MaskCodec("error").decode(rgb, "m.png")
    with pytest.raises(DlcvError, match="not one of"):
        MaskCodec("guess")


# --- mIoU ----------------------------------------------------------------------------------------------
def direct_miou(gt: np.ndarray, pred: np.ndarray) -> tuple[list[float], float]:
    """The course's formula written out literally."""
    ious = []
    for i in range(6):
        tp = np.sum((pred == i) & (gt == i))
        tp_fp = np.sum(pred == i)
        tp_fn = np.sum(gt == i)
        ious.append(tp / (tp_fp + tp_fn - tp) if (tp_fp + tp_fn - tp) else float("nan"))
    return ious, float(np.mean(ious))


def test_pooled_miou_matches_the_formula_on_random_masks():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 7, (5, 40, 40))
    pred = np.where(rng.random(gt.shape) < 0.6, gt, rng.integers(0, 7, gt.shape))
    matrix = sum(confusion(g, p) for g, p in zip(gt, pred))
    ious, expected = direct_miou(gt, pred)
    assert class_iou(matrix) == pytest.approx(ious, abs=1e-12)
    assert mean_iou(matrix) == pytest.approx(expected, abs=1e-12)


def test_the_colour_code_path_equals_decoding_then_counting_including_red():
    from dlcv.metrics.segmentation import code_confusion, codes_to_classes

    rng = np.random.default_rng(1)
    gt_rgb = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)  # every code, red included
    pred_rgb = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    codec = MaskCodec()
    expected = confusion(codec.decode(gt_rgb), codec.decode(pred_rgb))
    assert (codes_to_classes(code_confusion(gt_rgb, pred_rgb)) == expected).all()


def test_a_class_absent_from_both_gives_nan_and_unknown_pixels_count_as_false_positives():
    gt = np.array([[0, 0, 6, 6]])
    pred = np.array([[0, 0, 0, 6]])  # one Unknown pixel predicted as Urban
    iou = class_iou(confusion(gt, pred))
    assert iou[0] == pytest.approx(2 / 3)
    assert np.isnan(iou[1:]).all()
    assert np.isnan(mean_iou(confusion(gt, pred)))


# --- files ---------------------------------------------------------------------------------------------
def test_pairing_names_images_without_masks_and_masks_without_images(tmp_path, p2_data):
    folder = tmp_path / "pairs"
    shutil.copytree(p2_data / "train", folder)
    (folder / "0002_mask.png").unlink()
    (folder / "0004_sat.jpg").unlink()
    with pytest.raises(DlcvError, match=r"1 image\(s\) without a mask: 0002_sat\.jpg; 1 mask\(s\) without an image: "
                                        r"0004_mask\.png"):
        find_pairs(folder)


def test_evaluate_names_missing_and_extra_predictions(tmp_path, capsys, p2_data):
    pred = tmp_path / "pred"
    pred.mkdir()
    for p in sorted((p2_data / "validation").glob("*_mask.png"))[1:]:
        shutil.copy(p, pred / p.name)
    shutil.copy(p2_data / "validation" / "0001_mask.png", pred / "0099_mask.png")
    code, _, err = run_cli(capsys, "segment", "evaluate", "--predictions", pred, "--labels", p2_data / "validation")
    assert code == 2
    assert "0000_mask.png" in err and "0099_mask.png" in err and "Traceback" not in err


def test_evaluate_of_the_ground_truth_itself_is_perfect_and_ends_with_the_graded_line(capsys, p2_data, tmp_path):
    code, out, _ = run_cli(capsys, "segment", "evaluate", "--predictions", p2_data / "validation",
                           "--labels", p2_data / "validation", "--breakdown", tmp_path / "b.csv")
    assert code == 0
    lines = out.strip().splitlines()
    codec = MaskCodec()
    present = set(np.unique(np.concatenate([codec.decode(np.asarray(Image.open(p))).ravel()
                                            for p in (p2_data / "validation").glob("*_mask.png")])).tolist())
    for c in range(6):  # a class absent from both is 0/0, as the course's script prints it
        assert lines[c].startswith(f"class #{c} : {'1.00000' if c in present else 'nan'}"), lines[c]
    assert lines[-1] == ("mean_iou: 1.000000" if set(range(6)) <= present else "mean_iou: nan")
    rows = (tmp_path / "b.csv").read_text().splitlines()
    assert rows[0].startswith("mask,iou_urban") and len(rows) == 5
    expect_error(capsys, r"--breakdown .*b\.png: give a CSV file name \(ending in \.csv\)", "segment", "evaluate",
                 "--predictions", p2_data / "validation", "--labels", p2_data / "validation", "--breakdown",
                 tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_wrong_size_masks_and_broken_images_get_clear_errors(tmp_path, capsys, p2_data):
    pred = tmp_path / "pred"
    shutil.copytree(p2_data / "validation", pred)
    Image.new("RGB", (10, 10)).save(pred / "0000_mask.png")
    code, _, err = run_cli(capsys, "segment", "evaluate", "--predictions", pred, "--labels", p2_data / "validation")
    assert code == 2 and "0000_mask.png: prediction is 10x10" in err
    broken = tmp_path / "broken"
    shutil.copytree(p2_data / "validation", broken)
    (broken / "0001_sat.jpg").write_bytes(b"not a jpeg at all")
    code, _, err = run_cli(capsys, "segment", "overlay", "--image", broken / "0001_sat.jpg",
                           "--mask", broken / "0001_mask.png", "--output", tmp_path / "o.png")
    assert code == 2 and "0001_sat.jpg: not a readable image" in err
    assert not (tmp_path / "o.png").exists()


# --- augmentation --------------------------------------------------------------------------------------
def test_augmentation_moves_image_and_mask_together():
    from dlcv.data.augment import planes_to_float
    from dlcv.data.seg_batches import SegmentationBatches
    from dlcv.recipes import SegmentData

    masks = torch.zeros(6, 64, 64, dtype=torch.uint8)
    masks[:, :, 20:] = 3
    masks[:, 40:, :] = 5
    masks[:, 5:12, 5:30] = 1  # an asymmetric patch, so turns and mirrors show
    images = (masks * 40)[..., None].repeat(1, 1, 1, 3)  # the image spells out the class
    cfg = SegmentData(train_size=32)
    threads = torch.get_num_threads()
    batches = SegmentationBatches(images, masks, 6, cfg, shuffle=True, seed=1)
    out_image, out_mask = next(iter(batches))
    assert out_image.shape == (6, 3, 32, 32) and out_image.dtype == torch.uint8 and out_mask.shape == (6, 32, 32)
    agree = (out_image[:, 0].float() / 40).round().long() == out_mask.long()
    assert agree.float().mean() > 0.93  # only pixels on a class border may differ
    assert len({out_mask[i].numpy().tobytes() for i in range(6)}) > 1  # each sample drew its own crop
    again = SegmentationBatches(images, masks, 6, cfg, shuffle=True, seed=1)
    assert torch.equal(next(iter(again))[1], out_mask)  # the same (seed, epoch) draws the same crops
    assert torch.get_num_threads() == threads  # the pool's one-thread workers leave the caller's count alone
    later = []  # and the default a thread started later takes
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [threads]
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 1.0]
    finished = SegmentationBatches(images, masks, 6, cfg, normalize=(mean, std), shuffle=True, seed=1)
    float_image, long_mask = next(iter(finished))  # for a CPU trainer: finished on the workers, same values
    assert torch.equal(float_image, planes_to_float(out_image, mean, std)) and torch.equal(long_mask, out_mask.long())


@pytest.mark.parametrize("side", [37, 64, 90, 100])
def test_crop_pairs_mask_gather_equals_resize_mirror_and_turn(side):
    from dlcv.data.seg_batches import crop_pair

    generator = torch.Generator().manual_seed(side)
    mask = torch.randint(0, 7, (100, 100), dtype=torch.uint8, generator=generator)
    image = torch.randint(0, 256, (100, 100, 3), dtype=torch.uint8, generator=generator)
    top, left = (100 - side) // 3, (100 - side) // 2
    for mirror in (False, True):
        for turns in range(4):
            out, labels = crop_pair(image, mask.numpy(), (side, top, left, mirror, turns), 48)
            expected = F.interpolate(mask[top : top + side, left : left + side][None, None], size=(48, 48),
                                     mode="nearest-exact")[0, 0]
            picture = F.interpolate(image[top : top + side, left : left + side].permute(2, 0, 1)[None],
                                    size=(48, 48), mode="bilinear", antialias=True)[0]
            if mirror:
                expected, picture = expected.flip(1), picture.flip(2)
            expected, picture = torch.rot90(expected, turns, (0, 1)), torch.rot90(picture, turns, (1, 2))
            assert torch.equal(torch.from_numpy(labels.copy()), expected), (mirror, turns)
            assert torch.equal(out, picture), (mirror, turns)


def test_the_crop_pools_workers_run_one_kernel_thread_and_the_rest_keep_theirs():
    from dlcv.data.seg_batches import _crop_pool

    threads = torch.get_num_threads()
    with _crop_pool(2) as pool:  # a kernel first, so a worker that took the default late would show it
        inside = list(pool.map(lambda _: (torch.ones(1 << 20).add_(1), torch.get_num_threads())[1], range(4)))
    assert inside == [1, 1, 1, 1] and torch.get_num_threads() == threads


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity masks here")
def test_pools_size_to_the_cpus_the_process_may_use_not_the_machines():
    """Under SLURM, ``taskset`` or a cpuset the process may use fewer CPUs than the machine has: the crop
    workers, decoders and t-SNE threads follow the affinity mask, as torch's own threads do."""
    code = ("import os, torch; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from dlcv.runtime import usable_cpus; from dlcv.data.seg_batches import SegmentationBatches; "
            "x = torch.zeros(4, 3, 8, 8, dtype=torch.uint8); y = torch.zeros(4, 8, 8, dtype=torch.long); "
            "print(usable_cpus(), SegmentationBatches(x, y, 2, {}).workers)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]


def test_training_batches_for_an_accelerator_travel_as_uint8_and_end_equal_to_the_cpu_ones(p2_data):
    from types import SimpleNamespace

    from lightning.pytorch.plugins import Precision

    from dlcv.data.seg_batches import SegmentationData
    from dlcv.recipes import SegmentData

    cfg = SegmentData(train_size=32, batch_size=4, holdout=0.25)
    batches = {}
    for device in ("cpu", "cuda"):
        data = SegmentationData(p2_data, cfg, seed=0)
        data.prepare()
        data.trainer = SimpleNamespace(training=True, current_epoch=0, global_rank=0, world_size=1,
                                       strategy=SimpleNamespace(root_device=torch.device(device)),
                                       precision_plugin=Precision())  # 32-true's
        batches[device] = next(iter(data.train_dataloader()))
    images, masks = batches["cuda"]
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32) and masks.dtype == torch.uint8
    assert batches["cpu"][0].dtype == torch.float32 and batches["cpu"][1].dtype == torch.int64
    finished = data.on_after_batch_transfer((images, masks), 0)  # what the accelerator does with them
    assert torch.equal(finished[0], batches["cpu"][0]) and torch.equal(finished[1], batches["cpu"][1])
    passed = data.on_after_batch_transfer(batches["cpu"], 0)  # already finished on the workers: passed on
    assert passed[0] is batches["cpu"][0] and passed[1] is batches["cpu"][1]


def test_the_holdout_is_the_seeded_split_anyone_can_draw_again(p2_data):
    """benchmarks/tta_choice.py scores a run's holdout by drawing it again with random_holdout."""
    from dlcv.data.p2 import random_holdout
    from dlcv.data.seg_batches import SegmentationData
    from dlcv.recipes import SegmentData

    data = SegmentationData(p2_data, SegmentData(holdout=0.34), seed=5)
    data.prepare()
    ids = find_pairs(p2_data / "train").ids
    keep, hold = random_holdout(len(ids), 0.34, seed=5)
    assert data.val.names == [ids[i] for i in hold] and len(data.train) == len(keep)  # what the benchmarks score
    assert sorted([*keep, *hold]) == list(range(len(ids))) and list(hold) == sorted(hold)
    with pytest.raises(DlcvError, match="leaves no training pairs of 3"):
        random_holdout(3, 0.9, seed=0)


# --- models --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,args", [("unet_small", {"width": 4}), ("unet_lite0", {"decoder_widths": [16, 16, 8, 8]}),
                                       ("fcn32s", {})])
def test_models_return_logits_at_the_input_size(name, args):
    from dlcv.models import create_model

    model = create_model(name, num_classes=7, task="segment", **args).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 80)).shape == (1, 7, 96, 80)


def test_fcn32s_turns_vgg16_classifier_weights_into_fc6_fc7_convolutions(tmp_path):
    from torchvision.models import vgg16

    from dlcv.models import create_model

    state = vgg16(weights=None).state_dict()
    torch.save(state, tmp_path / "vgg16.pth")
    model = create_model("fcn32s", num_classes=7, task="segment", weights=str(tmp_path / "vgg16.pth"))
    assert torch.equal(model.fc6.weight.flatten(1), state["classifier.0.weight"])
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert model.upscore.kernel_size == (64, 64) and model.upscore.stride == (32, 32)


def test_deeplabv3_loads_a_local_resnet50_state_dict(tmp_path):
    from torchvision.models import resnet50

    from dlcv.models import create_model

    state = resnet50(weights=None).state_dict()
    torch.save(state, tmp_path / "pretrain_model_SL.pt")
    model = create_model("deeplabv3_resnet50", num_classes=7, task="segment",
                         backbone_weights=str(tmp_path / "pretrain_model_SL.pt"))
    assert torch.equal(model.net.backbone.conv1.weight, state["conv1.weight"])
    with pytest.raises(DlcvError, match="not a ResNet50 state_dict"):
        torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
        create_model("deeplabv3_resnet50", num_classes=7, task="segment", backbone_weights=str(tmp_path / "bad.pt"))


def test_deeplabv3_takes_whole_model_weights_and_replaces_both_heads(monkeypatch):
    """COCO_WITH_VOC_LABELS_V1 holds the auxiliary head: torchvision refuses those weights with aux_loss=False,
    which once made every such recipe fail as "could not be downloaded". The download is served locally here."""
    import torchvision.models._api as weights_api
    from torchvision.models import get_model

    from dlcv.models import create_model

    state = get_model("deeplabv3_resnet50", weights=None, weights_backbone=None, num_classes=21,
                      aux_loss=True).state_dict()
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", lambda *a, **k: state)
    model = create_model("deeplabv3_resnet50", num_classes=7, task="segment", weights="COCO_WITH_VOC_LABELS_V1")
    assert torch.equal(model.net.backbone.conv1.weight, state["backbone.conv1.weight"])
    assert model.net.classifier[-1].out_channels == 7 and model.net.aux_classifier is None
    assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 7, 64, 64)
    with_aux = create_model("deeplabv3_resnet50", num_classes=7, task="segment", weights="COCO_WITH_VOC_LABELS_V1",
                            aux_loss=True)
    assert with_aux.net.aux_classifier[-1].out_channels == 7


@pytest.mark.slow
def test_frozen_encoder_stages_get_no_gradient_and_keep_their_batch_norm_statistics():
    from dlcv.models import create_model

    model = create_model("unet_lite0", num_classes=7, freeze_stages=1, decoder_widths=[16, 16, 8, 8]).train()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("encoder.conv_stem", "encoder.bn1", "encoder.blocks.0", "encoder.blocks.1"))
                          for n in frozen)
    before = model.encoder.bn1.running_mean.clone()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert torch.equal(before, model.encoder.bn1.running_mean)
    assert model.encoder.conv_stem.weight.grad is None
    # model B's timm classifier freezes the same layers by the same number, and keeps them the same way
    classifier = create_model("timm", num_classes=5, arch="tf_efficientnet_lite0", freeze_stages=1).train()
    assert {n.removeprefix("net.") for n, p in classifier.named_parameters() if not p.requires_grad} == \
        {n.removeprefix("encoder.") for n in frozen}
    before = classifier.net.bn1.running_mean.clone()
    classifier(torch.randn(2, 3, 64, 64)).sum().backward()
    assert torch.equal(before, classifier.net.bn1.running_mean) and classifier.net.conv_stem.weight.grad is None
    after_the_frozen = classifier.net.blocks[2][0]
    assert after_the_frozen.bn1.training and after_the_frozen.conv_pw.weight.grad is not None
    with pytest.raises(DlcvError, match="freeze_stages must lie in 1..4, got 5"):
        create_model("timm", num_classes=5, arch="resnet18", freeze_stages=5)


def test_pixel_losses_reach_their_knobs():
    from dlcv.recipes import SegmentLoss
    from dlcv.tasks.losses import FocalLoss, SumOfLosses, build_pixel_loss

    logits, target = torch.randn(2, 7, 8, 8), torch.randint(0, 7, (2, 8, 8))

    def loss(**knobs):
        return build_pixel_loss(SegmentLoss(**{"focal_gamma": 0.0, **knobs}), 7)

    ce = torch.nn.functional.cross_entropy(logits, target)
    assert loss(name="focal")(logits, target) == pytest.approx(ce.item(), rel=1e-5)
    weights = [1, 2, 3, 4, 5, 6, 0]
    weighted = loss(name="ce", class_weights=weights)
    assert torch.equal(weighted.weight, torch.tensor(weights, dtype=torch.float32))
    perfect = torch.nn.functional.one_hot(target, 7).permute(0, 3, 1, 2).float() * 50
    assert loss(name="dice")(perfect, target).item() < 1e-3 < loss(name="dice")(-perfect, target).item()
    both = loss(name="ce+dice", dice_weight=0.5)
    assert isinstance(both, SumOfLosses) and both.weights == {"ce": 1.0, "dice": 0.5}
    assert isinstance(loss(name="focal", focal_gamma=2), FocalLoss)
    with pytest.raises(DlcvError, match="class_weights has 7 numbers for 5 classes"):
        build_pixel_loss(SegmentLoss(name="ce", class_weights=weights), 5)
    lovasz = loss(name="lovasz")
    assert lovasz(perfect, target).item() < 1e-3 < lovasz(-perfect, target).item()  # an IoU surrogate
    wrong = logits.clone().requires_grad_()
    lovasz(wrong.bfloat16(), target).backward()  # computed in float32 under bf16 autocast too
    assert wrong.grad is not None and wrong.grad.abs().sum() > 0
    summed = loss(name="ce+lovasz", lovasz_weight=0.5)
    assert summed.weights == {"ce": 1.0, "lovasz": 0.5}


# --- commands end to end -------------------------------------------------------------------------------
def test_fit_keeps_masks_through_training_and_progress_draws_the_grid(seg_run, capsys):
    progress = seg_run / "progress"
    assert sorted(p.name for p in progress.iterdir()) == ["epoch_001", "epoch_002", "ground_truth", "images"]
    assert sorted(p.name for p in (progress / "epoch_002").iterdir()) == ["0001_mask.png", "0003_mask.png"]
    code, _out, _ = run_cli(capsys, "segment", "progress", seg_run)
    assert code == 0
    png = seg_run / "figures" / "masks_through_training.png"
    assert png.exists() and (seg_run / "figures" / "masks_through_training.pdf").exists()
    width, height = Image.open(png).size
    assert 1.4 < width / height < 2.6  # 2 rows of 4 columns (image, epoch 1, epoch 2, ground truth)


def test_predict_then_evaluate_through_the_command_line(seg_run, p2_data, tmp_path, capsys):
    out_dir = tmp_path / "pred_masks"
    code, out, _ = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt",
                           "--images", p2_data / "validation", "--output", out_dir, "--tta", "d4")
    assert code == 0 and "wrote 4 masks" in out
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == [".dlcv-output", *(f"{i:04d}_mask.png" for i in range(4))]  # the masks and dlcv's manifest
    mask = np.asarray(Image.open(out_dir / "0000_mask.png").convert("RGB"))
    assert mask.shape == (96, 96, 3)
    assert {tuple(c) for c in mask.reshape(-1, 3)} <= {tuple(c) for c in CLASS_COLOURS}
    code, out, _ = run_cli(capsys, "segment", "evaluate", "--predictions", out_dir, "--labels", p2_data / "validation")
    assert code == 0 and out.strip().splitlines()[-1].startswith("mean_iou: ")
    # A folder that holds files is never mixed into; --overwrite replaces it whole.
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt",
                           "--images", p2_data / "validation", "--output", out_dir)
    assert code == 2 and "already holds a set of predicted masks; pass --overwrite" in err
    (out_dir / "stale_mask.png").write_bytes(b"old")
    code, _, _ = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt",
                         "--images", p2_data / "validation", "--output", out_dir, "--overwrite")
    assert code == 0 and not (out_dir / "stale_mask.png").exists()
    # A folder of another kind (a run) is never replaced by masks, --overwrite or not.
    run_copy = shutil.copytree(seg_run, tmp_path / "run_copy", ignore=shutil.ignore_patterns("*.ckpt"))
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", seg_run / "best.ckpt",
                           "--images", p2_data / "validation", "--output", run_copy, "--overwrite")
    assert code == 2 and "holds a run, not a set of predicted masks; choose another folder" in err, err
    assert (run_copy / "summary.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_a_classification_checkpoint_is_refused_by_segment_predict(trained_run, p2_data, tmp_path, capsys):
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", trained_run / "best.ckpt",
                           "--images", p2_data / "validation", "--output", tmp_path / "x")
    assert code == 2 and "a 'classify' checkpoint, not a 'segment' one" in err


def test_overlay_draws_the_mask_colours_over_the_image(p2_data, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "segment", "overlay", "--image", p2_data / "validation" / "0000_sat.jpg",
                         "--mask", p2_data / "validation" / "0000_mask.png", "--output", tmp_path / "o.png",
                         "--alpha", "1")
    assert code == 0
    drawn = np.asarray(Image.open(tmp_path / "o.png"))
    truth = MaskCodec.encode(MaskCodec().decode(np.asarray(Image.open(p2_data / "validation" / "0000_mask.png"))))
    inside = (drawn != 0).any(-1)  # outlines are black
    assert (drawn[inside] == truth[inside]).all()


@pytest.mark.skipif(not REAL_P2.is_dir(), reason="the real course data is not beside the repo")
def test_smoke_on_a_few_real_pairs(tmp_path, capsys):
    data = tmp_path / "p2_data"
    for split, ids in (("train", ["0000", "0001", "0002", "0003"]), ("validation", ["0013", "0177"])):
        (data / split).mkdir(parents=True)
        for i in ids:
            for kind in ("sat.jpg", "mask.png"):
                shutil.copy(REAL_P2 / split / f"{i}_{kind}", data / split / f"{i}_{kind}")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY_SEG_RECIPE.replace("epochs: 2", "epochs: 1").replace('"0001", "0003"', '"0013"'))
    assert main(["segment", "fit", "--config", str(recipe), "--data", str(data), "--runs-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    code, _, _ = run_cli(capsys, "segment", "predict", "--checkpoint", tmp_path / "seg_tiny" / "best.ckpt",
                         "--images", data / "validation", "--output", tmp_path / "pred")
    assert code == 0
    assert Image.open(tmp_path / "pred" / "0177_mask.png").size == (512, 512)
    code, out, _ = run_cli(capsys, "segment", "evaluate", "--predictions", tmp_path / "pred",
                           "--labels", data / "validation")
    assert code == 0
    assert "0177_mask.png: 7 pixel(s) of a colour in no class" in out
    assert out.strip().splitlines()[-1].startswith("mean_iou: ")


def test_with_a_holdout_the_progress_masks_are_of_the_validation_folder(p2_data, tmp_path):
    recipe = tmp_path / "h.yaml"
    recipe.write_text(TINY_SEG_RECIPE.replace("epochs: 2", "epochs: 1").replace("data: {", "data: {holdout: 0.34, "))
    assert main(["segment", "fit", "--config", str(recipe), "--data", str(p2_data), "--runs-dir", str(tmp_path)]) == 0
    run = tmp_path / "seg_tiny"
    saved = np.asarray(Image.open(run / "progress" / "ground_truth" / "0003_mask.png").convert("RGB"))
    truth = MaskCodec.encode(MaskCodec().decode(np.asarray(Image.open(p2_data / "validation" / "0003_mask.png"))))
    assert (saved == truth).all()
    summary = (run / "summary.json").read_text()
    assert '"final_validation"' in summary and "holdout 34%" in summary


@pytest.mark.parametrize("arch", ["Unet", "DeepLabV3Plus", "FPN", "Segformer"])
def test_smp_architectures_return_logits_at_any_input_size(arch):
    from dlcv.models import create_model

    model = create_model("smp", num_classes=7, task="segment", arch=arch, encoder="tu-tf_efficientnet_lite0").eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 100, 76)).shape == (2, 7, 100, 76)  # not multiples of 32


def test_smp_encoders_take_the_offline_lite_weights_and_bad_names_are_one_line(capsys, tmp_path):
    import timm
    from conftest import expect_error

    from dlcv.models import create_model
    from dlcv.models.weights import efficientnet_lite_state

    model = create_model("smp", num_classes=7, task="segment", arch="DeepLabV3Plus",
                         encoder="tu-tf_efficientnet_lite1", encoder_weights="efficientnet-lite1")
    reference = efficientnet_lite_state("efficientnet-lite1",
                                        timm.create_model("tf_efficientnet_lite1", pretrained=False).state_dict())
    encoder = model.model.encoder.state_dict()
    assert all(torch.equal(encoder[f"model.{k}"], v) for k, v in reference.items() if f"model.{k}" in encoder)
    assert sum(f"model.{k}" in encoder for k in reference) > 300  # every trunk tensor, not a few
    recipe = tmp_path / "smp.yaml"
    recipe.write_text("name: s\nmodel: {name: smp, args: {arch: NoSuchNet}}\n")
    expect_error(capsys, r"smp\.yaml: model\.args\.arch must be an architecture of segmentation_models_pytorch .*"
                 r"got 'NoSuchNet'", "segment", "fit", "--config", recipe,
                 "--data", tmp_path)
