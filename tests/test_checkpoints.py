"""A file that is not a dlcv checkpoint gets one line saying what it is not: no torch warning, no
torch advice to load untrusted files, no traceback, nothing written."""

from __future__ import annotations

import pickle
import random
import re
import zipfile

import pytest
import torch
from conftest import run_cli


class Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def _recipe(task: str, model: dict | None = None) -> dict:
    return {"task": task, "model": model or {"name": "dlcv_net", "args": {}}, "data": {}, "train": {}}


def _write(path, kind: str, task: str) -> None:
    """The bad file of ``kind`` at ``path``."""
    writers = {
        # seeded: unseeded bytes begin like a pickle (0x80, 2..5) once in 16,384 runs
        "random bytes": lambda: path.write_bytes(random.Random(0).randbytes(4096)),
        "empty": lambda: path.write_bytes(b""),
        "text": lambda: path.write_text("epoch,val_acc\n1,0.5\n"),
        "plain pickle": lambda: path.write_bytes(pickle.dumps({"state_dict": {}}, protocol=4)),
        "pickled code": lambda: torch.save({"state_dict": {}, "hyper_parameters": Payload()}, path),
        "zip of other files": lambda: zipfile.ZipFile(path, "w").writestr("notes.txt", "hi"),
        "plain state_dict": lambda: torch.save({"conv.weight": torch.zeros(2)}, path),
        "list": lambda: torch.save([1, 2], path),
        "no weights": lambda: torch.save({"hyper_parameters": {"recipe": _recipe(task), "num_classes": 3}}, path),
        "recipe without model": lambda: torch.save(
            {"state_dict": {}, "hyper_parameters": {"recipe": {"task": task, "data": {}, "train": {}}}}, path),
        "unknown model": lambda: torch.save(
            {"state_dict": {}, "hyper_parameters": {"recipe": _recipe(task, {"name": "nope", "args": {}}),
                                                    "num_classes": 3}}, path),
        "task arguments without model": lambda: torch.save(  # today's layout: the task's and the data's hparams
            {"state_dict": {}, "hyper_parameters": {"task": task, "train": {}, "num_classes": 3},
             "datamodule_hyper_parameters": {"data": {}}}, path),
        "another module's hyper-parameters": lambda: torch.save(
            {"state_dict": {}, "hyper_parameters": {"lr": 0.1, "task": "detect"}}, path),
        "model argument it lacks": lambda: torch.save(
            {"state_dict": {}, "hyper_parameters": {"recipe": _recipe(task, {"name": "dlcv_net" if task == "classify"
                                                                              else "unet_small", "args": {"bogus": 1}}),
                                                    "num_classes": 3}}, path),
    }
    writers[kind]()


EXPECTED = {
    "random bytes": r"not a PyTorch file \(neither its zip format nor a pickle\)",
    "empty": r"is empty, not a checkpoint",
    "text": r"not a PyTorch file",
    "plain pickle": r"a Python pickle but not a PyTorch file",
    "pickled code": r"refused to load: it holds Python objects beyond plain weights \(print\)",
    "zip of other files": r"a zip archive but not a PyTorch file",
    "plain state_dict": r"a plain state_dict, not a dlcv checkpoint",
    "list": r"a list, not a dlcv checkpoint",
    "no weights": r"a dlcv checkpoint without its weights",
    "recipe without model": r"recipe lacks its model",
    "task arguments without model": r"recipe lacks its model",
    "another module's hyper-parameters": r"a dict, not a dlcv checkpoint \(no recipe inside\)",
    "unknown model": r"its model cannot be rebuilt \(unknown .*model 'nope'",
    "model argument it lacks": r"its model cannot be rebuilt .*bogus",
}


@pytest.mark.parametrize("task", ["classify", "segment"])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_file_that_is_not_a_dlcv_checkpoint_is_one_line(capsys, tmp_path, p1_data, p2_data, kind, task):
    bad = tmp_path / "model.ckpt"
    _write(bad, kind, task)
    images = p1_data / "val_50" if task == "classify" else p2_data / "validation"
    output = tmp_path / ("p.csv" if task == "classify" else "masks")
    code, out, err = run_cli(capsys, task, "predict", "--checkpoint", bad, "--images", images, "--output", output)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dlcv: error: {bad}: "), err
    assert re.search(EXPECTED[kind], lines[0]), lines[0]
    assert "pickled code ran" not in out + err and "weights_only" not in err and "Traceback" not in err
    assert not output.exists()


def test_a_checkpoint_of_the_other_task_is_named(capsys, tmp_path, trained_run, p2_data):
    code, _, err = run_cli(capsys, "segment", "predict", "--checkpoint", trained_run / "best.ckpt", "--images",
                           p2_data / "validation", "--output", tmp_path / "masks")
    assert code == 2 and "a 'classify' checkpoint, not a 'segment' one" in err


def test_an_absurd_class_count_is_refused_before_the_model_is_built(capsys, tmp_path, trained_run, p1_data):
    ckpt = torch.load(trained_run / "best.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["num_classes"] = 10**12
    bad = tmp_path / "huge.ckpt"
    torch.save(ckpt, bad)
    code, _, err = run_cli(capsys, "classify", "predict", "--checkpoint", bad, "--images", p1_data / "val_50",
                           "--output", tmp_path / "p.csv")
    assert code == 2 and "no valid class count (num_classes 1000000000000)" in err


@pytest.mark.parametrize("fixture, task_name", [("trained_run", "classify"), ("seg_run", "segment")])
def test_each_task_loads_from_its_checkpoint_as_lightning_loads_a_module(request, fixture, task_name):
    """``Task.load_from_checkpoint(path)`` with ``weights_only`` (plain data, no pickled code): the task's typed
    recipe and a model that computes what dlcv's own loader's does."""
    from dlcv.checkpoints import load_predictor
    from dlcv.tasks.classification import ClassificationTask
    from dlcv.tasks.segmentation import SegmentationTask

    best = request.getfixturevalue(fixture) / "best.ckpt"
    kind = {"classify": ClassificationTask, "segment": SegmentationTask}[task_name]
    task = kind.load_from_checkpoint(best, weights_only=True, map_location="cpu").eval()
    model, recipe = load_predictor(best, task_name)
    assert (task.model_config, task.optim_config, task.train_config, task.seed) == (
        recipe.model, recipe.optim, recipe.train, recipe.seed)
    saved = torch.load(best, weights_only=True)
    assert saved["hyper_parameters"]["task"] == task_name and "recipe" not in saved["hyper_parameters"]
    assert recipe.data.model_dump() == saved["datamodule_hyper_parameters"]["data"]  # the data module's own
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(task(x), model(x), atol=1e-5)


def test_a_checkpoint_written_before_tasks_took_typed_arguments_still_predicts(capsys, tmp_path, trained_run, p1_data):
    """Older checkpoints hold the whole recipe as ``hyper_parameters["recipe"]``: prediction reads them as before."""
    from dlcv.checkpoints import read_checkpoint

    ckpt = torch.load(trained_run / "best.ckpt", map_location="cpu", weights_only=True)
    _, recipe = read_checkpoint(trained_run / "best.ckpt", "classify")
    ckpt["hyper_parameters"] = {"recipe": recipe.model_dump(), "num_classes": ckpt["hyper_parameters"]["num_classes"]}
    del ckpt["datamodule_hyper_parameters"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert read_checkpoint(old, "classify")[1] == recipe
    new_csv, old_csv = tmp_path / "new.csv", tmp_path / "old.csv"
    for path, csv in ((trained_run / "best.ckpt", new_csv), (old, old_csv)):
        assert run_cli(capsys, "classify", "predict", "--checkpoint", path, "--images", p1_data / "val_50",
                       "--output", csv)[0] == 0
    assert old_csv.read_text() == new_csv.read_text()


def test_a_task_is_built_from_typed_sections_or_their_dicts_and_refuses_a_broken_one():
    """The tasks take typed arguments with defaults, as torchgeo's do; a bad value is one line naming its key."""
    from dlcv.errors import DlcvError
    from dlcv.recipes import ClassifyRecipe, Model, SegmentLoss
    from dlcv.tasks.classification import ClassificationTask
    from dlcv.tasks.segmentation import SegmentationTask

    task = ClassificationTask(num_classes=7, model=Model(name="cnn3"))
    assert task.model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    assert task.optim_config == ClassifyRecipe().optim and task.hparams.num_classes == 7
    assert SegmentationTask(model={"name": "unet_small", "args": {}}, loss=SegmentLoss(name="ce+dice")).hparams.loss[
        "name"] == "ce+dice"
    with pytest.raises(DlcvError, match=r"ClassifyRecipe's arguments: optim.lr must be .*got -1"):
        ClassificationTask(num_classes=7, model=Model(name="cnn3"), optim={"name": "sgd", "lr": -1.0})
    with pytest.raises(DlcvError, match=r"ClassifyRecipe's arguments: model must be "):
        ClassificationTask(num_classes=7, model="cnn3")  # a name alone, as torchgeo's tasks take: not a section
