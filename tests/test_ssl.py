"""Self-supervised pre-training (BYOL), backbone files, the frozen settings, the A-E table, prediction."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from conftest import REPO, run_cli

from dlcv.data.synth import synth_p1
from dlcv.errors import DlcvError
from dlcv.recipes import ByolRecipe

TINY_BYOL = """\
name: tiny_byol
data: {image_size: 32, batch_size: 16, eval_batch_size: 64}
views: {size: 32, min_scale: 0.3}
model: {arch: resnet18}
byol: {hidden_dim: 32, output_dim: 16}
optim: {lr: 0.001}
train: {epochs: 1, threads: 1, precision: 32-true}
monitor: {k: 3}
"""
TINY_FINETUNE = """\
name: tiny_finetune
data: {image_size: 32, crop_padding: 2, batch_size: 16, eval_batch_size: 64, holdout: 0.25}
model: {name: resnet_transfer, args: {arch: resnet18, head: linear}}
train: {epochs: 1, threads: 1, precision: 32-true}
embed: {epochs: "first,last", train_subset: 8}
"""
TINY_SETTINGS = """\
name: tiny_table
pretrain: byol.yaml
finetune: finetune.yaml
backbones: {supervised: pretrain_model_SL.pt}
"""


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine the small steps here run faster than with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_task():
    from dlcv.tasks.byol import BYOLTask

    recipe = ByolRecipe(model={"arch": "resnet18"}, byol={"hidden_dim": 32, "output_dim": 16},
                        views={"size": 32, "min_scale": 0.3})
    task = BYOLTask.from_recipe(recipe)
    task.log = lambda *args, **kwargs: None  # no trainer to log to
    return task, recipe


def views_of(recipe, count=8, seed=0):
    from dlcv.data.ssl_views import byol_views

    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 32, 32, 3), dtype=torch.uint8, generator=generator)
    return byol_views(images, recipe.views, recipe.data.mean, recipe.data.std, generator)


def test_byol_views_are_two_different_normalised_crops_of_the_batch():
    _, recipe = tiny_task()
    view0, view1 = views_of(recipe)
    assert view0.shape == view1.shape == (8, 3, 32, 32)
    assert torch.isfinite(view0).all() and not torch.allclose(view0, view1)


def test_target_network_moves_only_by_momentum():
    task, recipe = tiny_task()
    task.momentum = lambda: 0.9
    online = {k: v.clone() for k, v in task.model.state_dict().items()}
    target = {k: v.clone() for k, v in task.target.state_dict().items()}
    loss = task.training_step(views_of(recipe), 0)
    for key, value in task.target.state_dict().items():
        if value.is_floating_point() and "running" not in key:
            expected = 0.9 * target[key] + 0.1 * online[key]
            assert torch.allclose(value, expected, atol=1e-6), key
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in task.target.parameters())
    optimizer_params = {id(p) for p in task.model.parameters()}
    assert not optimizer_params & {id(p) for p in task.target.parameters()}


def test_byol_loss_falls_on_a_tiny_data_set():
    task, recipe = tiny_task()
    task.momentum = lambda: 0.99
    optimizer = torch.optim.Adam(task.model.parameters(), lr=1e-3)
    batch = views_of(recipe, count=12)
    losses = []
    for _ in range(5):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.05, losses


def test_untrained_monitor_calibrates_batch_norm_on_the_pretraining_images_without_training():
    from types import SimpleNamespace

    from dlcv.data.augment import model_input
    from dlcv.tasks.byol import calibrate_batch_norm

    task, recipe = tiny_task()
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (24, 32, 32, 3), dtype=torch.uint8, generator=generator)
    def prepare(x):
        return model_input(x, recipe.data.mean, recipe.data.std, 32)

    before = {k: v.clone() for k, v in task.backbone.state_dict().items()}
    trunk = __import__("copy").deepcopy(task.backbone)
    calibrate_batch_norm(trunk, images, prepare, batch=8)
    after = trunk.state_dict()
    for key, value in before.items():
        if "running_mean" in key or "running_var" in key:
            assert not torch.allclose(after[key], value), key  # estimated from the images
        elif value.is_floating_point():
            assert torch.equal(after[key], value), key  # no weight moves
    assert not trunk.training
    assert trunk.bn1.momentum == 0.1  # restored after the cumulative average of the calibration
    rows = torch.tensor([[i % 3, int(i >= 12)] for i in range(24)])
    data = SimpleNamespace(cfg=recipe.data, eval_input=prepare, images=images, monitor_x=images, monitor_y=rows)
    result = task.knn_untrained(data)
    assert set(result) == {"knn_acc", "knn_acc_unit_bn"} and all(0.0 <= v <= 1.0 for v in result.values())
    assert all(torch.equal(task.backbone.state_dict()[k], v) for k, v in before.items())  # a copy was calibrated


def test_knn_monitor_reads_office_home_or_p1_layout_and_names_any_other_folder(ssl_data, tmp_path):
    from dlcv.data.office import monitor_sets

    p1 = synth_p1(tmp_path, num_classes=4, train_per_class=5, val_per_class=2)
    images, rows = monitor_sets(p1, 32, max_bank=8, seed=0, use_cache=False)
    assert images.shape[1:] == (32, 32, 3) and int((rows[:, 1] == 1).sum()) == 8  # every val_50 image a query
    assert int((rows[:, 1] == 0).sum()) == 8 and set(rows[rows[:, 1] == 0, 0].tolist()) == {0, 1, 2, 3}
    _, rows = monitor_sets(ssl_data / "office", 32, max_bank=100, seed=0, use_cache=False)
    assert int((rows[:, 1] == 0).sum()) == 24 and int((rows[:, 1] == 1).sum()) == 9
    with pytest.raises(DlcvError, match=r"not a kNN monitor folder"):
        monitor_sets(tmp_path, 32, max_bank=8, seed=0)


def test_exported_backbone_loads_strictly_into_torchvision_and_round_trips(tmp_path):
    from torchvision import models

    from dlcv.models.transfer import export_backbone, load_backbone, resnet_trunk

    trunk, _ = resnet_trunk("resnet18")
    path = export_backbone(trunk, "resnet18", tmp_path / "backbone.pt")
    plain = models.resnet18()
    plain.load_state_dict(torch.load(path, weights_only=True), strict=True)  # the course's way
    assert plain.fc.out_features == 1000
    again = load_backbone(path, "resnet18")
    x = torch.randn(2, 3, 32, 32)
    trunk.eval(), again.eval()
    assert torch.equal(trunk(x), again(x))


@pytest.mark.parametrize("size, layer", [(24, "layer4.1.conv2"), (16, "layer4.0.conv1")])
def test_a_trunk_on_small_images_computes_what_torchvision_does_with_the_centre_tap_on_1x1_maps(size, layer):
    """layer4 of a ResNet18 at 24 pixels is 1x1: its 3x3 convolutions take the centre-tap path; at 16
    pixels so does layer4's first, strided one (its input is 1x1 already). The outputs and every
    gradient are torchvision's (within float rounding)."""
    from torchvision import models

    from dlcv.models.transfer import CentreTapConv2d, resnet_trunk

    torch.manual_seed(0)
    ours, _ = resnet_trunk("resnet18")
    plain = models.resnet18()
    plain.fc = torch.nn.Identity()
    plain.load_state_dict(ours.state_dict(), strict=True)
    conv = ours.get_submodule(layer)
    assert type(conv) is CentreTapConv2d and ours.state_dict().keys() == plain.state_dict().keys()
    taken = []
    conv.register_forward_hook(lambda m, i, o: taken.append((i[0].shape[-2:], o.shape[-2:])))
    x = torch.randn(4, 3, size, size)
    a, b = ours(x), plain(x)
    # float32 rounding, as for the gradients below: 4e-5 on outputs of 4.7 with an AVX2 CPU's kernels
    assert taken == [((1, 1), (1, 1))] and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    (a * torch.arange(a.shape[1])).sum().backward()
    (b * torch.arange(b.shape[1])).sum().backward()
    for (name, p), q in zip(ours.named_parameters(), plain.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-4 * q.grad.abs().max().item()), name
    outer = conv.weight.grad.clone()
    outer[:, :, 1, 1] = 0
    assert outer.abs().max() == 0  # the taps that only ever see padding get no gradient, as in torchvision


def test_bf16_byol_steps_at_16_pixel_views_keep_the_trunk_finite():
    """At 16-pixel views layer4's strided 3x3 convolution sees a 1x1 map; oneDNN's bf16 weight gradient of
    it there put garbage into the padding-only taps and BYOL's loss became NaN within a few steps. On the
    centre-tap path those taps get exactly no gradient."""
    from dlcv.config import load_recipe
    from dlcv.data.ssl_views import byol_views
    from dlcv.tasks.byol import BYOLTask

    torch.manual_seed(0)
    recipe = load_recipe(ByolRecipe, REPO / "configs" / "ssl" / "byol_cpu.yaml")
    views = recipe.views.model_copy(update={"size": 16})
    task = BYOLTask.from_recipe(recipe, monitored=False)
    optimiser = torch.optim.SGD(task.model.parameters(), lr=0.06, momentum=0.9)
    images = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    strided = task.model["backbone"].layer4[0].conv1
    for _ in range(4):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = task.byol_loss(*byol_views(images, views, recipe.data.mean, recipe.data.std))
        optimiser.zero_grad()
        loss.backward()
        outer = strided.weight.grad.clone()
        outer[:, :, 1, 1] = 0
        assert torch.isfinite(loss) and outer.abs().max() == 0
        optimiser.step()
    assert all(torch.isfinite(p).all() for p in task.model.parameters())


def test_backbone_of_another_architecture_is_refused_by_name(ssl_data):
    from dlcv.models.transfer import load_backbone

    with pytest.raises(DlcvError, match="not a torchvision resnet50 state_dict"):
        load_backbone(ssl_data / "pretrain_model_SL.pt", "resnet50")


def test_finetune_refuses_a_backbone_of_another_architecture_before_writing(ssl_data, tmp_path, capsys):
    code, _, err = run_cli(capsys, "ssl", "finetune", "--setting", "B", "--backbone",
                           ssl_data / "pretrain_model_SL.pt", "--data", ssl_data / "office",
                           "--runs-dir", tmp_path / "runs")
    assert code == 2 and "not a torchvision resnet50 state_dict" in err
    assert not (tmp_path / "runs").exists()


def test_frozen_trunk_changes_no_parameter_or_batch_norm_statistic(ssl_data):
    from dlcv.models.transfer import TransferResNet

    def train_steps(freeze: bool):
        model = TransferResNet(3, arch="resnet18", backbone_weights=str(ssl_data / "pretrain_model_SL.pt"),
                               freeze=freeze)
        before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        head_before = model.head.weight.clone()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        model.train()
        for _ in range(2):
            loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.arange(8) % 3)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        changed = [k for k, v in model.backbone.state_dict().items() if not torch.equal(v, before[k])]
        return changed, not torch.equal(head_before, model.head.weight)

    changed, head_moved = train_steps(freeze=True)
    assert changed == [] and head_moved
    changed, _ = train_steps(freeze=False)  # the same steps unfrozen do move weights and statistics
    assert any("running_mean" in k for k in changed) and any(k.endswith("conv1.weight") for k in changed)


def test_transfer_split_keeps_the_two_roles_apart(tmp_path, capsys):
    p1 = synth_p1(tmp_path, num_classes=50, train_per_class=2, val_per_class=1)
    code, _, err = run_cli(capsys, "data", "transfer-split", "--p1", p1, "--output", tmp_path / "split")
    assert code == 0, err
    split = tmp_path / "split"
    assert len(list((split / "mini" / "train").glob("*.jpg"))) == 25 * 2
    with open(split / "office" / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 25 * 2 and {int(r["label"]) for r in rows} == set(range(25))
    assert len(list((split / "office" / "val").glob("*.jpg"))) == 25
    assert sorted({int(p.name.split("_")[0]) for p in (split / "supervised" / "train_50").iterdir()}) == list(range(25))


def write_tiny_settings(folder, extra: str = ""):
    """The tiny table's settings file and the two recipes it names, in ``folder``; returns the settings file."""
    (folder / "byol.yaml").write_text(TINY_BYOL)
    (folder / "finetune.yaml").write_text(TINY_FINETUNE)
    (folder / "settings.yaml").write_text(TINY_SETTINGS + extra)
    return folder / "settings.yaml"


@pytest.fixture(scope="module")
def table_run(ssl_data, tmp_path_factory):
    """The A-E table on synthetic data, run once for the module: (its folder, the settings file)."""
    from dlcv.ssl_table import table

    base = tmp_path_factory.mktemp("table")
    return table(write_tiny_settings(base), ssl_data, runs_dir=base / "runs"), base / "settings.yaml"


def test_table_has_five_settings_with_their_run_folders(table_run):
    folder, _ = table_run
    result = json.loads((folder / "table.json").read_text())
    assert [r["setting"] for r in result["rows"]] == ["A", "B", "C", "D", "E"]
    for row in result["rows"]:  # each setting's accuracy is its run's final scoring
        summary = json.loads((folder / row["setting"] / "summary.json").read_text())
        assert row["accuracy"] == summary["final_validation"]["accuracy"]
    assert [r["finetuning"] for r in result["rows"]] == ["full", "full", "full", "frozen", "frozen"]
    with open(folder / "table.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 5
    assert "| C | self-supervised | full |" in (folder / "table.md").read_text()
    byol = folder / "byol"
    with open(byol / "metrics.csv", newline="") as handle:
        assert all(row["knn_acc"] for row in csv.DictReader(handle))
    assert (byol / "backbone.pt").is_file() and (byol / "knn_curve.png").is_file()
    summary = json.loads((byol / "summary.json").read_text())
    with open(byol / "metrics.csv", newline="") as handle:  # the summary's curve is the logged one
        logged = [float(row["knn_acc"]) for row in csv.DictReader(handle)]
    assert summary["knn_acc"] == pytest.approx(logged, abs=1e-6) and len(logged) == 1
    assert summary["knn_monitor"].endswith("office")  # the default monitor
    untrained = json.loads((byol / "knn_at_init.json").read_text())
    assert untrained["knn_acc"] == summary["knn_acc_at_init"]
    assert (folder / "C" / "embeddings" / "train_epoch_001.npz").is_file()  # t-SNE of C's training set


def test_table_monitors_byol_on_the_labelled_folder_it_names(ssl_data, tmp_path):
    from dlcv.ssl_table import table

    p1 = synth_p1(tmp_path, num_classes=3, train_per_class=4, val_per_class=2)
    folder = table(write_tiny_settings(tmp_path, "settings: [E]\n"), ssl_data, runs_dir=tmp_path / "runs",
                   overrides=(f"data.monitor={p1}",))
    summary = json.loads((folder / "byol" / "summary.json").read_text())
    assert summary["knn_monitor"] == str(p1) and len(summary["knn_acc"]) == 1


def test_table_reuses_finished_runs(table_run, ssl_data, capsys):
    folder, settings = table_run
    stamps = {s: (folder / s / "summary.json").stat().st_mtime_ns for s in "ABCDE"}
    code, out, err = run_cli(capsys, "ssl", "table", "--config", settings, "--data", ssl_data,
                             "--runs-dir", folder.parent)
    assert code == 0, err
    assert out.count("reusing") == 6  # the BYOL backbone and the five settings
    assert stamps == {s: (folder / s / "summary.json").stat().st_mtime_ns for s in "ABCDE"}


def test_a_resumed_setting_keeps_its_backbone(table_run, ssl_data, capsys):
    """A setting's backbone and freezing are part of its run: resuming it from another backbone is one line."""
    folder, _ = table_run
    rows = {r["setting"]: r for r in json.loads((folder / "table.json").read_text())["rows"]}
    stamp = (folder / "C" / "summary.json").stat().st_mtime_ns
    code, _, err = run_cli(capsys, "ssl", "finetune", "--setting", "C", "--data", ssl_data / "office", "--backbone",
                           rows["B"]["backbone"], "--runs-dir", folder, "--name", "C", "--resume")
    assert code == 2 and "model.args.backbone_weights cannot change on resume" in err, err
    assert (folder / "C" / "summary.json").stat().st_mtime_ns == stamp


def test_predictions_keep_the_input_csv_order_with_empty_labels(table_run, ssl_data, tmp_path, capsys):
    folder, _ = table_run
    names = ["2_1.jpg", "0_0.jpg", "1_2.jpg", "0_2.jpg"]
    test_csv = tmp_path / "test.csv"
    test_csv.write_text("id,filename,label\n" + "".join(f"{10 - i},{n},\n" for i, n in enumerate(names)))
    code, _, err = run_cli(capsys, "ssl", "predict", "--checkpoint", folder / "C" / "best.ckpt", "--csv", test_csv,
                           "--images", ssl_data / "office" / "val", "--output", tmp_path / "pred.csv")
    assert code == 0, err
    with open(tmp_path / "pred.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["filename"] for r in rows] == names and [r["id"] for r in rows] == ["10", "9", "8", "7"]
    assert all(0 <= int(r["label"]) < 3 for r in rows)


def test_prediction_csv_without_id_column_is_a_clear_error(table_run, ssl_data, tmp_path, capsys):
    folder, _ = table_run
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,label\n0_0.jpg,\n")
    code, _, err = run_cli(capsys, "ssl", "predict", "--checkpoint", folder / "C" / "best.ckpt", "--csv", bad,
                           "--images", ssl_data / "office" / "val", "--output", tmp_path / "pred.csv")
    assert code == 2 and "missing column(s) id" in err and "Traceback" not in err
    assert not (tmp_path / "pred.csv").exists()


def read_metric(path, column):
    """One column of a run's metrics.csv, by epoch (rows without it skipped)."""
    from dlcv.runs import read_metrics

    return [row[column] for row in read_metrics(path) if row.get(column) is not None]


def test_pretraining_resumes_from_its_last_checkpoint(ssl_data, tmp_path):
    from dlcv.ssl import pretrain

    recipe = tmp_path / "byol.yaml"
    recipe.write_text(TINY_BYOL)
    run = pretrain(recipe, ssl_data / "mini" / "train", runs_dir=tmp_path / "runs")
    assert read_metric(run / "metrics.csv", "knn_acc") == []  # no monitor given: no kNN column
    saved = (run / "recipe.yaml").read_text()
    (run / "recipe.yaml").write_text(saved.replace("epochs: 1", "epochs: 2"))  # as if stopped after epoch 1 of 2,
    (run / "summary.json").unlink()  # before its summary
    pretrain(recipe, ssl_data / "mini" / "train", runs_dir=tmp_path / "runs", resume=True)
    momentum = read_metric(run / "metrics.csv", "momentum")
    assert len(momentum) == 2 and momentum[1] > momentum[0]  # the schedule went on from the resumed step
    assert json.loads((run / "summary.json").read_text())["epochs"] == 2


def test_transfer_split_overwrite_replaces_an_earlier_split(tmp_path, capsys):
    from conftest import expect_error

    p1 = synth_p1(tmp_path, num_classes=50, train_per_class=2, val_per_class=1)
    split = tmp_path / "split"
    assert run_cli(capsys, "data", "transfer-split", "--p1", p1, "--output", split)[0] == 0
    first = sorted(str(p.relative_to(split)) for p in split.rglob("*"))
    expect_error(capsys, r"split.*--overwrite", "data", "transfer-split", "--p1", p1, "--output", split)
    code, _, err = run_cli(capsys, "data", "transfer-split", "--p1", p1, "--output", split, "--overwrite",
                           "--seed", "1")
    assert code == 0, err
    assert sorted(str(p.relative_to(split)) for p in split.rglob("*")) == first  # the same files, a new draw


def test_the_pretraining_task_loads_from_its_checkpoint_as_lightning_loads_a_module(table_run):
    """``BYOLTask.load_from_checkpoint`` (weights only): the trunk the run saved as ``backbone.pt``."""
    from dlcv.tasks.byol import BYOLTask

    folder, _ = table_run
    task = BYOLTask.load_from_checkpoint(folder / "byol" / "best.ckpt", weights_only=True, map_location="cpu")
    saved = torch.load(folder / "byol" / "backbone.pt", weights_only=True)  # a whole torchvision ResNet's
    state = task.backbone.state_dict()
    assert set(state) <= set(saved) and all(torch.equal(state[k], saved[k]) for k in state)
