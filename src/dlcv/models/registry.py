"""One registry of model builders, so that a recipe file can name any model."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable

from torch import nn

from dlcv.errors import DlcvError, exception_line, shown

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
KINDS = ("classify", "segment")
# Modules whose import registers builders; imported on first lookup so that listing is cheap.
_MODULES = ("dlcv.models.small", "dlcv.models.pretrained", "dlcv.models.segmentation",
            "dlcv.models.transfer")


# Model arguments that name pretrained weights: rebuilding a trained model from its checkpoint
# must not read them again (the checkpoint holds every weight, and the file may be gone).
WEIGHT_ARGS = ("weights", "backbone_weights", "encoder_weights")


def rebuild_args(args: dict) -> dict:
    """A recipe's model arguments with every pretrained-weights argument set to None."""
    return {k: (None if k in WEIGHT_ARGS else v) for k, v in args.items()}


def register_model(name: str, kind: str = "classify") -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``fn(num_classes=..., **kwargs)`` (a function or a model class) buildable as
    ``create_model(name, ...)``.

    ``kind`` says what the model does: ``classify`` (logits per image) or ``segment`` (per pixel).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        _KINDS[name] = kind
        return fn

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_models(kind: str | None = None) -> list[str]:
    _load_all()
    return sorted(n for n in _BUILDERS if kind is None or _KINDS[n] == kind)


def model_kind(name: str) -> str | None:
    """What the registered model ``name`` does (one of ``KINDS``), or None for an unknown name."""
    _load_all()
    return _KINDS.get(name)


def model_summary(name: str) -> str:
    """The first line of the builder's docstring."""
    _load_all()
    return ((_BUILDERS[name].__doc__ or "").strip().splitlines() or [""])[0]


def create_model(name: str, num_classes: int, kind: str | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` outputs (of ``kind``, when given)."""
    _load_all()
    if name not in _BUILDERS or (kind is not None and _KINDS[name] != kind):
        known = list_models(kind)
        what = f"{kind} model" if kind else "model"
        raise DlcvError(f"unknown {what} {shown(name)}; known: {', '.join(known)}")
    try:
        return _BUILDERS[name](num_classes=num_classes, **kwargs)
    except TypeError as exc:
        unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unexpected:
            raise DlcvError(f"model.args.{unexpected.group(1)} is not an argument of model {name!r}") from None
        raise DlcvError(f"model {name!r}: {exception_line(exc)}") from None
