"""Reading dlcv checkpoints safely: plain tensors only (``weights_only``), with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

from dlcv.data.p1 import MAX_CLASSES
from dlcv.errors import DlcvError


def checkpoint_recipe(ckpt) -> dict | None:
    """Assemble the plain recipe of a dlcv checkpoint: its task's hyper-parameters and its data module's.

    Args:
        ckpt: the checkpoint's loaded object.

    Returns:
        The recipe as a mapping (the task, seed and sections the task and data module saved; the rest at their
        defaults once validated), or None when ``ckpt`` holds no dlcv task's hyper-parameters. A checkpoint written
        before tasks took typed arguments holds the whole recipe as ``hyper_parameters["recipe"]``; it is read as is.
    """
    from dlcv.recipes import RECIPES

    hyper = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hyper, dict):
        return None
    if isinstance(hyper.get("recipe"), dict):
        return hyper["recipe"]
    task = hyper.get("task")
    if task not in RECIPES:
        return None
    data = ckpt.get("datamodule_hyper_parameters")
    saved = {**(data if isinstance(data, dict) else {}), **hyper}
    return {name: value for name, value in saved.items() if name in RECIPES[task].model_fields}


def read_checkpoint(path: str | os.PathLike, task: str | tuple[str, ...]):
    """Read a dlcv checkpoint of ``task`` without running pickled code, its recipe typed.

    Args:
        path: the checkpoint file.
        task: the task it must be of (``classify``, ``segment``...), or several.

    Returns:
        ``(checkpoint, recipe)``: the checkpoint's dict and its validated recipe (``checkpoint_recipe``'s).

    Raises:
        DlcvError: if the file is unreadable, no dlcv checkpoint, of another task, without its weights or recipe
            sections, or its recipe breaks a rule (one line saying what the file is not).
    """
    from dlcv.config import validated
    from dlcv.models.weights import safe_load
    from dlcv.recipes import RECIPES

    path, tasks = Path(path), (task,) if isinstance(task, str) else task
    ckpt = safe_load(path, "checkpoint")
    recipe = checkpoint_recipe(ckpt)
    if recipe is None:
        what = "a plain state_dict" if isinstance(ckpt, dict) and ckpt and all(
            hasattr(v, "shape") for v in ckpt.values()) else f"a {type(ckpt).__name__}"
        raise DlcvError(f"{path}: {what}, not a dlcv checkpoint (no recipe inside); train one with "
                        + " or ".join(f"'{RECIPES[t].FIT_COMMAND}'" for t in tasks))
    if recipe.get("task") not in tasks:
        raise DlcvError(f"{path}: a {recipe.get('task')!r} checkpoint, not a {' or a '.join(map(repr, tasks))} one")
    if not isinstance(ckpt.get("state_dict"), dict):
        raise DlcvError(f"{path}: a dlcv checkpoint without its weights (no state_dict)")
    if not all(isinstance(recipe.get(section), dict) for section in ("model", "data", "train")):
        raise DlcvError(f"{path}: a dlcv checkpoint whose recipe lacks its model, data or train section")
    return ckpt, validated(RECIPES[recipe["task"]], recipe, lambda key: f"{path} (its recipe)")


def load_predictor(path: str | os.PathLike, task: str | tuple[str, ...]):
    """Load a classification or segmentation checkpoint's model for inference.

    Args:
        path: the checkpoint file.
        task: the task it must be of (``classify``, ``segment``), or several.

    Returns:
        ``(model, recipe)``: the model on the CPU in evaluation mode, and the checkpoint's recipe.

    Raises:
        DlcvError: if ``read_checkpoint`` refuses the file, its class count is invalid, or its model cannot be
            rebuilt or does not take its weights.
    """
    from dlcv.models import create_model, rebuild_args

    ckpt, recipe = read_checkpoint(path, task)
    spec, num_classes = recipe.model, recipe.CLASSES or ckpt["hyper_parameters"].get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise DlcvError(f"{path}: a dlcv checkpoint with no valid class count (num_classes {num_classes!r})")
    try:
        model = create_model(spec.name, num_classes=num_classes, task=recipe.task, **rebuild_args(spec.args))
    except DlcvError as exc:
        raise DlcvError(f"{path}: its model cannot be rebuilt ({exc})") from None
    load_model_weights(model, ckpt, path, spec.name)
    return model, recipe


def load_model_weights(model, ckpt: dict, path: str | os.PathLike, model_name: str) -> None:
    """Load a checkpoint's ``model.*`` weights into ``model`` (strict), then put it in evaluation mode.

    Args:
        model: the rebuilt model.
        ckpt: the checkpoint's dict (``read_checkpoint``'s).
        path: the checkpoint file, for the messages.
        model_name: the recipe's model name, for the messages.

    Raises:
        DlcvError: if a weight holds NaN or infinite values, or the weights do not fit ``model``.
    """
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    broken = next((k for k, v in state.items() if v.is_floating_point() and not v.isfinite().all()), None)
    if broken is not None:  # every output would be NaN: no prediction or export is worth writing
        raise DlcvError(f"{path}: its weights hold NaN or infinite values ({broken}); train it again")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DlcvError(f"{path}: its weights do not fit model {model_name!r} ({detail})") from None
    model.eval()
