"""Issue 3: every recipe knob reaches the optimiser, schedule, loss or data path; model B by name;
exact resume after SIGKILL; two-process DDP with gathered validation metrics."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO, budget_fit, run_cli, wait_parked

from dlcv.config import load_recipe
from dlcv.errors import DlcvError
from dlcv.recipes import ClassifyData, ClassifyRecipe, ClassifyTrain, Model


def _recipe(**sections) -> ClassifyRecipe:
    return ClassifyRecipe(**{section: type(getattr(ClassifyRecipe(), section))(**values)
                             for section, values in sections.items()})


def _optimizer_and_schedule(recipe: ClassifyRecipe, steps: int = 100, per_epoch: int = 10):
    from dlcv.plan import Plan
    from dlcv.tasks.optim import build_optimizer, build_scheduler

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    optimizer = build_optimizer(model, recipe.optim)
    scheduler = build_scheduler(optimizer, recipe.schedule, Plan(steps, per_epoch))
    return optimizer, scheduler


def _lrs(optimizer, scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler["scheduler"].step()
    return out


@pytest.mark.parametrize("name,cls", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                      ("adamw", torch.optim.AdamW)])
def test_optimiser_knobs_reach_the_optimiser(name, cls):
    recipe = _recipe(optim={"name": name, "lr": 0.02, "weight_decay": 0.3, "momentum": 0.8, "betas": [0.8, 0.9]},
                     schedule={"name": "constant"})
    optimizer, _ = _optimizer_and_schedule(recipe)
    assert isinstance(optimizer, cls)
    decay, no_decay = optimizer.param_groups
    assert decay["lr"] == 0.02 and decay["weight_decay"] == 0.3 and no_decay["weight_decay"] == 0.0
    if name == "sgd":
        assert decay["momentum"] == 0.8
    else:
        assert decay["betas"] == (0.8, 0.9)


def test_multistep_with_warmup_follows_milestones_and_gamma():
    recipe = _recipe(optim={"lr": 1.0}, schedule={"name": "multistep", "milestones": [3, 6], "gamma": 0.5,
                                                  "warmup_epochs": 1})
    lrs = _lrs(*_optimizer_and_schedule(recipe, steps=100, per_epoch=10), 80)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)  # linear warm-up over epoch 1
    assert lrs[29] == pytest.approx(1.0) and lrs[30] == pytest.approx(0.5) and lrs[60] == pytest.approx(0.25)


def test_cosine_with_warm_restarts_restarts_and_grows_its_period():
    recipe = _recipe(optim={"lr": 1.0}, schedule={"name": "cosine_restarts", "restart_epochs": 2, "restart_mult": 2,
                                                  "warmup_epochs": 0})
    lrs = _lrs(*_optimizer_and_schedule(recipe, steps=100, per_epoch=10), 100)
    assert lrs[0] == pytest.approx(1.0) and lrs[19] < 0.01  # first period: 2 epochs
    assert lrs[20] == pytest.approx(1.0) and lrs[59] < 0.01  # second: 4 epochs
    assert lrs[60] == pytest.approx(1.0)


def test_onecycle_and_cosine_reach_their_peaks_and_floors():
    onecycle = _recipe(optim={"lr": 1.0}, schedule={"name": "onecycle", "pct_start": 0.3, "div_factor": 10,
                                                    "final_div_factor": 100})
    lrs = _lrs(*_optimizer_and_schedule(onecycle), 100)
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0, rel=1e-3) and lrs[-1] < 0.002
    cosine = _recipe(optim={"lr": 1.0}, schedule={"name": "cosine", "min_lr_fraction": 0.1})
    lrs = _lrs(*_optimizer_and_schedule(cosine), 100)
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_loss_knobs_reach_the_loss():
    from dlcv.tasks.classification import ClassificationTask

    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    targets = torch.nn.functional.one_hot(y, 5).float()
    cnn3 = Model(name="cnn3")  # a task takes its typed sections, as torchgeo's take their arguments
    smooth = ClassificationTask(num_classes=5, model=cnn3, train=ClassifyTrain(label_smoothing=0.2))
    assert smooth.loss(logits, targets) == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.2).item(), rel=1e-5)
    focal = ClassificationTask(num_classes=5, model=cnn3,
                               train=ClassifyTrain(loss="focal", focal_gamma=0.0, label_smoothing=0.0))
    assert focal.loss(logits, targets) == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    focal2 = ClassificationTask(num_classes=5, model={"name": "cnn3", "args": {}},  # or their plain dicts
                                train={"loss": "focal", "focal_gamma": 2.0, "label_smoothing": 0.0})
    assert focal2.loss(logits, targets) < focal.loss(logits, targets)


def test_mixup_cutmix_and_auto_augment_reach_the_batches():
    from dlcv.data.policies import auto_augment, mix

    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 32, 32, 3), dtype=torch.uint8)
    for policy in ("trivialaugment", "randaugment"):
        out = auto_augment(images, policy)
        assert out.shape == images.shape and out.dtype == torch.uint8 and not torch.equal(out, images)
    with pytest.raises(DlcvError, match="data.auto_augment"):
        auto_augment(images, "autoaugment_v9")
    x, y = torch.randn(6, 3, 32, 32), torch.arange(6)
    _, soft = mix(x, y, 10, mixup_alpha=0.4, cutmix_alpha=0.0)
    assert soft.shape == (6, 10) and torch.allclose(soft.sum(1), torch.ones(6))
    assert (soft > 0).sum() > 6  # labels really mixed
    plain_x, plain = mix(x, y, 10, 0.0, 0.0)
    assert torch.equal(plain_x, x) and torch.equal(plain.argmax(1), y)


def test_trainer_knobs_reach_the_trainer(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, WeightAveraging

    from dlcv.trainer import build_trainer

    recipe = _recipe(train={"early_stopping_patience": 4, "ema_decay": 0.99, "gradient_clip": 1.5, "save_top_k": 3,
                            "deterministic": True, "accelerator": "cpu", "devices": 1})
    trainer = build_trainer(tmp_path, recipe, monitor="val_acc", mode="max", max_epochs=5)
    stops = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stops) == 1 and stops[0].patience == 4 and stops[0].monitor == "val_acc"
    emas = [c for c in trainer.callbacks if isinstance(c, WeightAveraging)]
    assert len(emas) == 1 and emas[0].decay == 0.99
    assert trainer.gradient_clip_val == 1.5
    tops = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint) and c.save_top_k == 3]
    assert len(tops) == 1
    # Deterministic where a kernel has a deterministic version; CUDA has none for some (warn, never crash).
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)


def test_the_weight_average_is_bias_corrected_from_the_first_step():
    """After step t the average is sum_i decay^(t-i) w_i / sum_i decay^(t-i): no share is left to the first
    step's weights beyond their own (the plain EMA keeps decay^(t-1) of them); integer buffers follow the model."""
    from types import SimpleNamespace

    import lightning as L

    from dlcv.trainer import BiasCorrectedEMA

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer, self.norm = torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)

    module, decay = Tiny(), 0.9
    ema = BiasCorrectedEMA(decay)
    ema.setup(SimpleNamespace(), module, "fit")
    steps = [torch.randn(2, 3) for _ in range(6)]
    for t, weight in enumerate(steps, start=1):
        module.layer.weight.data.copy_(weight)
        module.norm.num_batches_tracked.fill_(t)
        ema.on_train_batch_end(SimpleNamespace(global_step=t), module, None, None, 0)
        shares = torch.tensor([decay ** (t - i) for i in range(1, t + 1)], dtype=torch.float64)
        expected = (torch.stack(steps[:t]).double() * (shares / shares.sum())[:, None, None]).sum(0)
        averaged = ema._average_model.module
        torch.testing.assert_close(averaged.layer.weight.double(), expected, rtol=1e-5, atol=1e-6)
        assert int(averaged.norm.num_batches_tracked) == t
    # A *-true precision (bf16-true, 64-true) trains in its own dtype: the float32 average takes its steps alike.
    for dtype in (torch.bfloat16, torch.float64):
        ema.average(list(averaged.parameters()), [p.to(dtype) for p in module.parameters()], 0)
        assert averaged.layer.weight.dtype == torch.float32


def test_model_b_by_name_replaces_the_head_and_loads_local_weights(tmp_path):
    import timm

    from dlcv.models import create_model

    source = timm.create_model("resnet10t", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = create_model("timm", num_classes=7, arch="resnet10t", weights=str(tmp_path / "resnet10t.pth"))
    assert model.head.out_features == 7
    assert torch.equal(model.net.conv1[0].weight, source.conv1[0].weight)
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        assert model(x).shape == (2, 7) and model.forward_features(x).shape == (2, model.feature_dim)
    tv = create_model("torchvision", num_classes=5, arch="resnet18")
    assert tv.head.out_features == 5 and tv.feature_dim == 512
    lite = create_model("timm", num_classes=50, arch="tf_efficientnet_lite0", weights="efficientnet-lite0")
    assert lite.head.out_features == 50
    with pytest.raises(DlcvError, match=r"model\.args\.arch must be a timm model name .*got 'no_such_net'"):
        create_model("timm", num_classes=3, arch="no_such_net")


def test_recipes_of_the_reports_load_by_name():
    names = ["r1_model_a", "r1_model_b", "r2_model_a", "r2_model_b", "r3_model_a", "r3_model_b", "r5_model_b"]
    for name in names:
        recipe = load_recipe(ClassifyRecipe, REPO / "configs" / "p1" / f"{name}.yaml")
        assert recipe.name == name
    assert load_recipe(ClassifyRecipe, REPO / "configs/p1/r3_model_b.yaml").data.mixup_alpha == 0.1
    assert load_recipe(ClassifyRecipe, REPO / "configs/p1/r5_model_b.yaml").train.save_top_k == 5


# --- exact resume and scale-out ------------------------------------------------------------------------
RESUME_RECIPE = """\
name: resume
seed: 3
data: {batch_size: 8, eval_batch_size: 64, mixup_alpha: 0.2}
model: {name: dlcv_net, args: {widths: [8, 16, 16], stem_width: 8}}
optim: {lr: 0.05}
schedule: {name: cosine}
train: {epochs: 3, threads: 1, precision: 32-true, deterministic: true, ema_decay: 0.9, early_stopping_patience: 10}
embed: {epochs: ""}
"""


def _fit_process(data: Path, recipe: Path, runs: Path, *extra: str, park=None) -> subprocess.Popen:
    return budget_fit(data, recipe, runs, *extra, park=park)


def _last_row(run: Path) -> dict:
    import csv

    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))[-1]


@pytest.fixture(scope="module")
def bigger_p1(tmp_path_factory) -> Path:
    from dlcv.data.synth import synth_p1

    return synth_p1(tmp_path_factory.mktemp("p1_resume"), num_classes=4, train_per_class=60, val_per_class=8)


@pytest.mark.slow
def test_a_run_stopped_by_sigterm_mid_epoch_resumes_to_the_same_final_metrics(bigger_p1, tmp_path):
    """The SLURM preemption case: SIGTERM mid-epoch (dlcv ends at once, exit 143; SIGKILL after a grace period
    leaves the same files), then --resume."""
    recipe = tmp_path / "resume.yaml"
    recipe.write_text(RESUME_RECIPE)
    # The uninterrupted run and the one to be killed side by side (one thread each, deterministic).
    straight = _fit_process(bigger_p1, recipe, tmp_path / "straight")
    runs = tmp_path / "killed"
    wait_parked(_fit_process(bigger_p1, recipe, runs, park=(1, 5)), signal.SIGTERM)  # the sixth batch of epoch 2
    out, err = straight.communicate(timeout=600)
    assert straight.returncode == 0, err
    expected = _last_row(tmp_path / "straight" / "resume")
    csv_path = runs / "resume" / "metrics.csv"
    assert len(csv_path.read_text().splitlines()) - 1 == 1  # epoch 1 ended, 2 did not

    resumed = _fit_process(bigger_p1, recipe, runs, "--resume")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "resuming" in out
    got = _last_row(runs / "resume")
    for key in ("epoch", "val_acc", "val_loss", "train_loss"):
        assert got[key] == expected[key], key
    rows = (runs / "resume" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]


def test_resume_without_a_run_says_so(p1_data, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RESUME_RECIPE)
    code, _, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data,
                           "--runs-dir", tmp_path, "--resume")
    assert code == 2 and "nothing to resume" in err


@pytest.mark.parametrize("steps", [2, 3, 4, 8])
def test_onecycle_runs_to_its_end_on_a_run_of_a_few_steps(steps):
    """A warm-up of one step (4 steps at pct_start 0.25) made torch divide by zero."""
    optimizer, scheduler = _optimizer_and_schedule(_recipe(schedule={"name": "onecycle", "pct_start": 0.25}),
                                                   steps=steps, per_epoch=2)
    lrs = _lrs(optimizer, scheduler, steps)
    assert len(lrs) == steps and all(0 < lr <= 0.1 + 1e-9 for lr in lrs)


def test_last_checkpoint_is_the_last_epoch_even_when_it_is_not_the_best(trained_run):
    """Lightning 2.6's save_last writes last.ckpt only in epochs that improve: --resume would repeat the rest."""
    import torch

    last = torch.load(trained_run / "last.ckpt", weights_only=True)
    assert last["epoch"] == 1 and last["global_step"] == 2 * 3  # 2 epochs of 48 images in batches of 16


def test_train_threads_hold_for_one_fit_and_the_process_count_comes_back(capsys, tmp_path, p1_data, recipe):
    """A fit with ``train.threads: 1`` must not leave the process at one thread (a later fit in the same
    process, such as the demo after the tests' tiny fits, would run at a fraction of its speed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        code, out, _ = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data,
                               "--runs-dir", tmp_path / "runs", "--set", "train.epochs=1")
        assert code == 0, out
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_whitening_stem_is_set_from_the_training_images_before_fit_and_kept(capsys, tmp_path, p1_data, recipe):
    """dlcv_net's ``whiten``: the fit sets the stem from its training images (the task's setup hook), the
    optimiser leaves it as it is, and the checkpoint holds it."""
    from dlcv.data.augment import prepare_batch
    from dlcv.data.batches import ClassificationData
    from dlcv.models import create_model
    from dlcv.tasks.classification import INIT_IMAGES

    code, out, _ = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir",
                           tmp_path / "runs", "--set", "train.epochs=1", "--set", "model.args.stem_width=24",
                           "--set", "model.args.whiten=true")
    assert code == 0, out
    # map_location: a run on a GPU saves its tensors as cuda ones
    best = torch.load(tmp_path / "runs" / "tiny" / "best.ckpt", map_location="cpu", weights_only=True)
    saved = best["state_dict"]["model.stem.0.weight"]
    data = ClassificationData(p1_data, ClassifyData(), seed=0)
    data.prepare()
    expected = create_model("dlcv_net", num_classes=4, widths=[8, 16, 16], whiten=True)
    expected.init_from_images(prepare_batch(data.train.x[:INIT_IMAGES], data.cfg))
    assert torch.allclose(saved, expected.stem[0].weight, atol=1e-6)


def test_a_run_whose_loss_becomes_nan_stops_with_one_line_and_keeps_the_epochs_before(capsys, tmp_path, p1_data,
                                                                                       recipe):
    """A loss gone NaN (here: a learning rate that overflows the weights in the second epoch) stops the run
    with one line naming the run folder and the epoch, exit 2; no summary.json is written, and the
    checkpoints are the first epoch's, whose weights are finite."""
    from dlcv.tasks.base import BaseTask

    class Overflow(torch.optim.lr_scheduler.LRScheduler):
        def get_lr(self):  # epoch 1 at the recipe's rate, then a rate that sends the weights to inf
            return [0.05 if self.last_epoch < 3 else 1e38 for _ in self.optimizer.param_groups]

    original = BaseTask.configure_optimizers

    def overflowing(self):
        optimizer = original(self)
        optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": Overflow(optimizer), "interval": "step"}}

    BaseTask.configure_optimizers = overflowing
    try:
        code, out, err = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data,
                                 "--runs-dir", tmp_path / "runs", "--set", "train.epochs=3")
    finally:
        BaseTask.configure_optimizers = original
    run = tmp_path / "runs" / "tiny"
    assert code == 2 and "Traceback" not in err, (out, err)
    assert err.strip().splitlines()[-1] == (
        f"dlcv: error: {run}: the training loss became NaN or infinite in epoch 2; the run stops here, its "
        "checkpoints hold the epochs before (try a lower optim.lr, or train.precision: 32-true)")
    assert not (run / "summary.json").exists()
    for name in ("best.ckpt", "last.ckpt"):
        saved = torch.load(run / name, weights_only=True)
        assert saved["epoch"] == 0 and all(torch.isfinite(v).all() for v in saved["state_dict"].values()
                                           if v.is_floating_point())


def test_head_lr_mult_gives_the_head_its_own_rate_and_the_schedule_scales_both():
    from dlcv.errors import DlcvError
    from dlcv.models import create_model
    from dlcv.plan import Plan
    from dlcv.tasks.optim import build_optimizer, build_scheduler

    recipe = _recipe(optim={"name": "adamw", "lr": 0.01, "head_lr_mult": 10.0},
                     schedule={"name": "cosine", "min_lr_fraction": 0.0})
    model = create_model("cnn3", num_classes=5)
    optimizer = build_optimizer(model, recipe.optim)
    head = {id(p) for p in model.head.parameters()}
    groups = optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.01, 0.01, 0.1, 0.1]
    assert all(id(p) in head for g in groups[2:] for p in g["params"])
    assert not any(id(p) in head for g in groups[:2] for p in g["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    scheduler = build_scheduler(optimizer, recipe.schedule, Plan(10, 10))["scheduler"]
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert groups[2]["lr"] == pytest.approx(10 * groups[0]["lr"]) and 0 < groups[0]["lr"] < 0.01
    with pytest.raises(DlcvError, match="head_lr_mult"):
        build_optimizer(torch.nn.Sequential(torch.nn.Linear(4, 4)), recipe.optim)


def test_only_last_checkpoint_carries_the_optimiser_and_the_raw_weights_beside_the_average(capsys, tmp_path,
                                                                                           p1_data, recipe):
    """best.ckpt and top/ are for scoring and prediction: the weights validated with (the weight average) and
    the recipe, without what only --resume reads (Adam's moments, the raw weights), which last.ckpt keeps."""
    from dlcv.trainer import RESUME_ONLY

    code, out, _ = run_cli(capsys, "classify", "fit", "--config", recipe, "--data", p1_data, "--runs-dir", tmp_path,
                           "--set", "train.epochs=1", "--set", "optim.name=adamw", "--set", "optim.lr=0.01",
                           "--set", "train.ema_decay=0.5", "--set", "train.save_top_k=2")
    assert code == 0, out
    run = tmp_path / "tiny"
    best, last = (torch.load(run / name, weights_only=True) for name in ("best.ckpt", "last.ckpt"))
    (top,) = (torch.load(path, weights_only=True) for path in (run / "top").glob("*.ckpt"))
    assert set(RESUME_ONLY) <= set(last) and not set(RESUME_ONLY) & (set(best) | set(top))
    assert best["hyper_parameters"]["train"]["ema_decay"] == 0.5 and best["datamodule_hyper_parameters"]["data"]
    for held in (best["state_dict"], top["state_dict"]):  # one epoch: every file holds that epoch's average
        assert held.keys() == last["state_dict"].keys()
        assert all(torch.equal(held[k], last["state_dict"][k]) for k in held)
    raw = last["current_model_state"]
    assert any(not torch.equal(raw[k], best["state_dict"][k]) for k in raw if k.endswith("weight"))
    assert (run / "best.ckpt").stat().st_size < (run / "last.ckpt").stat().st_size / 3
