"""Every recipe value is checked as the recipe is loaded, before any data is read or any run folder
exists: one line naming the key and where the value came from (the recipe file or --set)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, expect_error

from dlcv import recipes
from dlcv.config import load_recipe
from dlcv.errors import DlcvError


def _fit(recipe, data, runs, *extra):
    return ("classify", "fit", "--config", recipe, "--data", data, "--runs-dir", runs, *extra)


@pytest.mark.parametrize("line,pattern", [
    ("data: {batch_size: big}", r"data\.batch_size must be a whole number >= 1, got 'big'"),
    ("data: {holdout: 1.0}", r"data\.holdout must be a number in \[0, 1\), got 1\.0"),
    ("optim: {name: adamz}", r"optim\.name must be one of sgd, adam, adamw, lars, got 'adamz'"),
    ("optim: {weight_decay: -0.1}", r"optim\.weight_decay must be a number >= 0, got -0\.1"),
    ("train: {precision: fp8}", r"train\.precision must be one of auto, .*, got 'fp8'"),
    ("data: {mean: [0.5, 0.5]}", r"data\.mean must be a list of 3"),
    ("model: {name: dlcv_net, args: {widthz: [8]}}", r"model\.args\.widthz is not an argument of model 'dlcv_net'"),
    ("model: {name: resnet9000}", r"unknown classify model 'resnet9000'"),
])
def test_a_bad_value_in_the_recipe_file_names_the_key_and_the_file(capsys, tmp_path, p1_data, line, pattern):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(f"name: bad\n{line}\n")
    expect_error(capsys, rf"bad\.yaml: {pattern}", *_fit(recipe, p1_data, tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting,pattern", [
    ("optim.lr=-1", r"optim\.lr must be a number >= 0, got -1"),
    ("train.epochs=0", r"train\.epochs must be a whole number >= 1, got 0"),
    ("data.mixup_alpha=-0.2", r"data\.mixup_alpha must be a number >= 0"),
    ("model.args.stem=3", r"model\.args\.stem is not an argument of model 'dlcv_net'"),
])
def test_a_bad_value_from_set_names_set(capsys, tmp_path, recipe, p1_data, setting, pattern):
    expect_error(capsys, rf"--set: {pattern}", *_fit(recipe, p1_data, tmp_path / "runs", "--set", setting))
    assert not (tmp_path / "runs").exists()


def test_segment_fit_and_ssl_pretrain_leave_no_run_folder_for_a_bad_recipe(capsys, tmp_path, p2_data):
    expect_error(capsys, r"--set: data\.eval_size must be a whole number >= 1, got 0", "segment", "fit", "--config",
                 REPO / "configs" / "seg" / "cpu.yaml", "--data", p2_data, "--runs-dir", tmp_path / "runs",
                 "--set", "data.eval_size=0")
    expect_error(capsys, r"--set: byol\.momentum must be a number in \[0, 1\), got 1\.5", "ssl", "pretrain", "--config",
                 REPO / "configs" / "ssl" / "byol_cpu.yaml", "--data", tmp_path, "--runs-dir", tmp_path / "runs",
                 "--set", "byol.momentum=1.5")
    assert not (tmp_path / "runs").exists()


def test_a_missing_weights_file_fails_before_the_run_folder(capsys, tmp_path, p1_data):
    recipe = tmp_path / "b.yaml"
    recipe.write_text("model: {name: timm, args: {arch: resnet18, weights: /nowhere/w.pth}}\ntrain: {epochs: 1}\n")
    expect_error(capsys, r"/nowhere/w\.pth", *_fit(recipe, p1_data, tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_sam_knobs_are_checked_as_loaded():
    with pytest.raises(DlcvError, match=r"--set: generator\.points_per_side must be a whole number >= 1 and <= 256, "
                       r"got 0"):
        load_recipe(recipes.SamRecipe, None, ["generator.points_per_side=0"])


def test_exponent_floats_are_numbers_in_files_and_in_set(tmp_path):
    """``5e-4`` as every user writes it: PyYAML's YAML 1.1 would read it (and ``1.0e4``) as a string."""
    path = tmp_path / "r.yaml"
    path.write_text("optim: {lr: 5e-4, weight_decay: 1.0e4}\n")
    recipe = load_recipe(recipes.ClassifyRecipe, path, ["schedule.min_lr_fraction=1E-2"])
    assert (recipe.optim.lr, recipe.optim.weight_decay) == (5e-4, 1e4)
    assert recipe.schedule.min_lr_fraction == 0.01
    with pytest.raises(DlcvError, match=r"optim\.lr must be a number >= 0, got '5e-4x'"):
        load_recipe(recipes.ClassifyRecipe, path, ["optim.lr=5e-4x"])


KINDS = {"p1": "classify", "seg": "segment", "sam": "sam", "byol": "ssl_pretrain", "settings": "ssl_table",
         "finetune": "ssl_finetune", "supervised": "classify"}


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_recipe_passes_the_checks(path: Path):
    kind = path.parent.name if path.parent.name != "ssl" else path.stem.split("_")[0]
    recipe = load_recipe(recipes.RECIPES[KINDS[kind]], path)
    assert recipe.name


@pytest.mark.parametrize("task", list(recipes.RECIPES))
def test_every_key_has_its_default_rule_and_meaning_in_one_schema(task):
    rows = recipes.describe_keys(recipes.RECIPES[task])
    assert all(len(meaning) > 5 for *_, meaning in rows), task
    assert all(wants for _, _, wants, _ in rows), task  # every key says what a good value is
    assert len({key for key, *_ in rows}) == len(rows)


def test_the_schemas_names_are_the_registries_names():
    """Optimisers, schedules and pixel losses are built by name from registries; the schema (which imports no
    torch) accepts exactly those names."""
    from dlcv.tasks.losses import PIXEL_LOSSES
    from dlcv.tasks.optim import OPTIMIZERS, SCHEDULES

    assert tuple(OPTIMIZERS) == recipes.OPTIMIZERS and tuple(SCHEDULES) == recipes.SCHEDULES
    assert tuple(PIXEL_LOSSES) == recipes.PIXEL_LOSSES
    from dlcv.tta import CLASSIFY_VIEWS as CLASSIFY_TTA
    from dlcv.tta import SEGMENT_VIEWS as SEGMENT_TTA

    assert tuple(CLASSIFY_TTA) == recipes.TTA_MODES and tuple(SEGMENT_TTA) == recipes.SEG_TTA_MODES
    assert recipes.describe_field(recipes.Optim.model_fields["name"]) == f"one of {', '.join(OPTIMIZERS)}"


def test_dlcv_keys_lists_every_key_with_its_default_rule_and_meaning(capsys):
    from conftest import run_cli

    code, out, err = run_cli(capsys, "keys", "ssl_finetune")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [key for key, *_ in recipes.describe_keys(recipes.FinetuneRecipe)]
    holdout = next(line for line in lines if line.startswith("data.holdout "))
    assert "0.1" in holdout and "(a number in [0, 1))" in holdout and "stratified share" in holdout


def test_the_configuration_page_lists_every_key_as_dlcv_keys_markdown_prints_them(capsys):
    from conftest import run_cli

    code, out, _ = run_cli(capsys, "keys", "--markdown")
    assert code == 0 and out == recipes.keys_markdown()
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page.endswith(out), "docs/configuration.md's tables are stale: end it with `dlcv keys --markdown`"
    assert all(f"`{key}`" in out for task in recipes.RECIPES for key, *_ in recipes.describe_keys(recipes.RECIPES[task])
               if key != "task")
    code, _, err = run_cli(capsys, "keys")
    assert code == 2 and "give a task" in err
