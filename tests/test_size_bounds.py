"""Every size has a bound, checked as the recipe or the flags load, before any folder exists: an image side or a batch
against the machine's memory (the estimate and the largest value that fits, in one line), SAM's prompts likewise,
widths, devices, SAM's grid and crop layers, ``dlcv launch``'s port, timeout and processes, and ``dlcv data synth``'s
sizes against fixed bounds; Lightning's options against the names Lightning accepts. The shipped recipes still load
on a small machine."""

from __future__ import annotations

import pytest
from conftest import REPO, expect_error

from dlcv import recipes, rules
from dlcv.config import load_recipe
from dlcv.errors import DlcvError

GB = 10**9


@pytest.fixture
def small_machine(monkeypatch):
    """A machine of 31 GB of memory and no GPU, whatever runs the test."""
    monkeypatch.setattr(rules, "machine_memory", lambda: 31 * GB)
    monkeypatch.setattr(rules, "gpu_memory", lambda: 0)


def _fit(tmp_path, command, config, *sets):
    extra = [arg for value in sets for arg in ("--set", value)]
    return (*command, "--config", REPO / "configs" / config, "--data", tmp_path / "data", "--runs-dir",
            tmp_path / "runs", *extra)


CLASSIFY, SEGMENT, PRETRAIN = ("classify", "fit"), ("segment", "fit"), ("ssl", "pretrain")


@pytest.mark.parametrize(("command", "config", "sets", "pattern"), [
    # the side is further above its default than the batch: the side is named, and its largest value
    (CLASSIFY, "p1/model_a_cpu.yaml", ["data.input_size=30000"],
     r"--set: data\.input_size=30000: one float32 batch of 32 images \(data\.batch_size\) of 3x30000x30000 needs "
     r"~346 GB, this machine has 31 GB of memory; give at most 8984$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["data.batch_size=1000000000"],
     r"--set: data\.batch_size=1000000000: one float32 batch of 1000000000 images of 3x32x32 needs ~12.3 TB, this "
     r"machine has 31 GB of memory; give at most 2522786$"),
    (CLASSIFY, "p1/model_b_cpu.yaml", ["data.eval_batch_size=100000000"],
     r"--set: data\.eval_batch_size=100000000: one float32 batch of 100000000 images of 3x128x128 \(data\.input_size\) "
     r"needs ~19\.7 TB, this machine has 31 GB of memory; give at most 157674$"),
    (SEGMENT, "seg/cpu.yaml", ["data.train_size=30000"],
     r"--set: data\.train_size=30000: one float32 batch of 16 images \(data\.batch_size\) of 3x30000x30000 needs "
     r"~173 GB, this machine has 31 GB of memory; give at most 12706$"),
    (PRETRAIN, "ssl/byol_cpu.yaml", ["views.size=100000"],
     r"--set: views\.size=100000: one float32 batch of 128 images \(data\.batch_size\), two views each, of "
     r"3x100000x100000 needs ~30.7 TB, .*; give at most 3176$"),
    # Lightning's options: the key, the value and the choices
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.strategy=banana"],
     r"--set: train\.strategy must be one of auto, ddp, .*, fsdp, .*, got 'banana'$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.accelerator=banana"],
     r"train\.accelerator must be one of auto, cpu, gpu, cuda, mps, tpu, got 'banana'$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.precision=8-true"],
     r"train\.precision must be one of auto, .*got '8-true'$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.devices=100000"],
     r"train\.devices must be auto, a number of devices in 1\.\.1024 or a list of device indices, got 100000$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.devices=[0, 5000]"], r"train\.devices must be .*, got \[0, 5000\]$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.num_nodes=100000"], r"train\.num_nodes must be .* <= 1024, got 100000$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["train.threads=100000"], r"train\.threads must be .* <= 1024, got 100000$"),
    # widths
    (CLASSIFY, "p1/model_a_cpu.yaml", ["model={name: cnn3, args: {widths: [64, 1000000]}}"],
     r"model\.args\.widths must be a non-empty list of whole numbers in 1\.\.16384, got \[64, 1000000\]$"),
    (CLASSIFY, "p1/model_a_cpu.yaml", ["model={name: resnet_small, args: {blocks: [2, 2, 2, 2, 2, 2, 2, 2]}}"],
     r"model\.args\.blocks must be a list of 1 to 6 whole numbers in 0\.\.64, got \[2, 2, 2, 2, 2, 2, 2, 2\]$"),
    (SEGMENT, "seg/cpu.yaml", ["model={name: unet_small, args: {depth: 40}}"],
     r"model\.args\.depth must be a whole number >= 0 and <= 8, got 40$"),
    (PRETRAIN, "ssl/byol_cpu.yaml", ["byol.hidden_dim=10000000"],
     r"byol\.hidden_dim must be a whole number >= 1 and <= 16384, got 10000000$"),
    # widths each within their bound, together past the machine: the model counted on the meta device
    (CLASSIFY, "p1/model_a_cpu.yaml", ["model={name: cnn3, args: {widths: [16384, 16384, 16384]}}"],
     r"model\.args: model 'cnn3' has 12,214,453,762 parameters; training them \(weights, gradients and two "
     r"optimiser moments in float32\) needs ~195 GB, this machine has 31 GB of memory; give at most "
     r"1,937,500,000 parameters \(smaller widths\)$"),
    (SEGMENT, "seg/cpu.yaml", ["model={name: unet_small, args: {width: 16384}}"],
     r"model\.args: model 'unet_small' has [0-9,]+ parameters; .* needs ~[0-9.]+ [TP]B, this machine has 31 GB"),
])
def test_a_size_past_its_bound_is_one_line_and_no_run_folder(capsys, tmp_path, small_machine, command, config, sets,
                                                            pattern):
    expect_error(capsys, pattern, *_fit(tmp_path, command, config, *sets))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("sets", "pattern"), [
    (["generator.crop_n_layers=10"], r"--set: generator\.crop_n_layers must be a whole number >= 0 and <= 3, got 10$"),
    (["generator.points_per_side=100000"], r"generator\.points_per_side must be a whole number >= 1 and <= 256"),
    (["generator.points_per_batch=1000000"],
     r"--set: generator\.points_per_batch=1000000: one batch of 1000000 prompts with 3 float32 mask logits of "
     r"1024x1024 each needs ~12.6 TB, this machine has 31 GB of memory; give at most 2463$"),
])
def test_sam_knobs_past_their_bounds_are_one_line_and_no_output(capsys, tmp_path, small_machine, sets, pattern):
    args = [arg for value in sets for arg in ("--set", value)]
    expect_error(capsys, pattern, "sam", "masks", "--checkpoint", tmp_path / "sam.pth", "--images", tmp_path,
                 "--output", tmp_path / "masks", *args)
    assert not (tmp_path / "masks").exists()


def test_the_machine_bounds_count_the_gpu_unless_the_run_is_on_the_cpu(monkeypatch):
    """A batch past the memory but within the GPU's loads; on the CPU it does not."""
    monkeypatch.setattr(rules, "machine_memory", lambda: 31 * GB)
    monkeypatch.setattr(rules, "gpu_memory", lambda: 141 * GB)
    sets = ["data.input_size=2048", "data.batch_size=2048"]  # 103 GB
    assert load_recipe(recipes.ClassifyRecipe, None, sets).data.input_size == 2048
    with pytest.raises(DlcvError, match=r"needs ~103 GB, this machine has 31 GB of memory; give at most"):
        load_recipe(recipes.ClassifyRecipe, None, [*sets, "train.accelerator=cpu"])
    monkeypatch.setattr(rules, "gpu_memory", lambda: 80 * GB)
    with pytest.raises(DlcvError, match=r"this machine has 31 GB of memory and 80 GB on its GPU; give at most 1804$"):
        load_recipe(recipes.ClassifyRecipe, None, sets)


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_loads_on_a_small_machine(monkeypatch, path):
    """Every recipe of configs/ and every task's defaults fit a 4 GB machine without a GPU: the bounds refuse
    only what no machine runs."""
    from test_recipe_schema import KINDS

    monkeypatch.setattr(rules, "machine_memory", lambda: 4 * GB)
    monkeypatch.setattr(rules, "gpu_memory", lambda: 0)
    kind = path.parent.name if path.parent.name != "ssl" else path.stem.split("_")[0]
    assert load_recipe(recipes.RECIPES[KINDS[kind]], path).name
    for kind in recipes.RECIPES.values():
        load_recipe(kind, None)


def test_the_lightning_names_are_lightnings():
    """``train.strategy`` takes exactly Lightning's registered strategies and auto; every named accelerator but
    auto and gpu (Lightning's aliases) is a registered one."""
    import typing

    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    assert set(rules.STRATEGIES) == {"auto", *StrategyRegistry.available_strategies()}
    named = typing.get_args(recipes.Train.model_fields["accelerator"].annotation)
    assert set(named) - {"auto", "gpu"} <= set(AcceleratorRegistry.available_accelerators())


@pytest.mark.parametrize(("args", "pattern"), [
    (["--nnodes", "2", "--master", "127.0.0.1:99999"],
     r"--master '127\.0\.0\.1:99999': the port must be in 1\.\.65535$"),
    (["--nnodes", "2", "--master", "h:0"], r"the port must be in 1\.\.65535$"),
    (["--nnodes", "2", "--master", "h:" + "9" * 5000], r"the port must be in 1\.\.65535$"),
    (["--join-timeout", str(10**20)],
     rf"--join-timeout {10**20}: need a number of seconds >= 1 and <= 86400 \(a day\)$"),
    (["--nproc-per-node", "1000000"], r"--nproc-per-node 1000000: need nodes and processes >= 1 and <= 1024"),
    (["--nnodes", "100000", "--master", "h:1"], r"--nnodes 100000 .*need nodes and processes >= 1 and <= 1024"),
])
def test_launch_values_past_their_bounds_are_one_line(capsys, args, pattern):
    expect_error(capsys, pattern, "launch", *args, "--", "models")


@pytest.mark.parametrize(("args", "pattern"), [
    (["--p2-size", "100000"], r"--p2-size 100000: drawing one 100000x100000 pair at 120 bytes a pixel needs ~1\.2 TB, "
     r"this machine has 31 GB of memory; give at most 16072$"),
    (["--p2-train", "100000", "--p2-size", "1024"],
     r"--p2-train 100000 and --p2-validation 8 at --p2-size 1024: 1\.05e\+11 pixels to draw; give at most 1\.72e\+10"),
    (["--classes", "100000", "--train-per-class", "100"],
     r"--classes 100000 with --train-per-class 100 and --val-per-class 20: 12000000 images to draw; give at most "
     r"1000000 in all$"),
])
def test_synthetic_data_sizes_past_their_bounds_are_one_line_and_nothing_written(capsys, tmp_path, small_machine,
                                                                                 args, pattern):
    """p2's sizes are checked before p1 is written: the command writes both or neither."""
    expect_error(capsys, pattern, "data", "synth", "--output", tmp_path / "out", *args)
    assert not (tmp_path / "out").exists()
