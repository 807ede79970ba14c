"""Reading dlcv checkpoints safely: plain tensors only (``weights_only``), with clear errors."""

from __future__ import annotations

import os
from pathlib import Path

from dlcv.errors import DlcvError

TASK_COMMANDS = {"classify": "dlcv classify fit", "segment": "dlcv segment fit"}
# Model arguments that name pretrained weights: rebuilding a trained model from its checkpoint
# must not read them again (the checkpoint holds every weight, and the file may be gone).
WEIGHT_ARGS = ("weights", "backbone_weights", "encoder_weights")


def rebuild_args(args: dict) -> dict:
    """A recipe's model arguments with every pretrained-weights argument set to None."""
    return {k: (None if k in WEIGHT_ARGS else v) for k, v in args.items()}


def read_checkpoint(path: str | os.PathLike, task: str) -> tuple[dict, dict]:
    """``(checkpoint, recipe)`` of a dlcv checkpoint of ``task``, loaded without running pickled code."""
    from dlcv.models.weights import safe_load

    path = Path(path)
    ckpt = safe_load(path, "checkpoint")
    recipe = ckpt.get("hyper_parameters", {}).get("recipe") if isinstance(ckpt, dict) else None
    if not isinstance(recipe, dict) or "state_dict" not in ckpt:
        raise DlcvError(f"{path}: not a dlcv checkpoint (no recipe inside); train one with '{TASK_COMMANDS[task]}'")
    if recipe.get("task") != task:
        raise DlcvError(f"{path}: a {recipe.get('task')!r} checkpoint, not a {task!r} one")
    return ckpt, recipe


def load_model_weights(model, ckpt: dict, path: str | os.PathLike, model_name: str) -> None:
    """The checkpoint's ``model.*`` weights into ``model`` (strict), then evaluation mode."""
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise DlcvError(f"{path}: its weights do not fit model {model_name!r} ({detail})") from None
    model.eval()
