"""One registry of model builders, so that a recipe file can name any model."""

from __future__ import annotations

import importlib
from typing import Callable

import torch.nn as nn

from dlcv.errors import DlcvError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# Modules whose import registers builders; imported on first lookup so that listing is cheap.
_MODULES = ("dlcv.models.small",)


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``fn(num_classes=..., **kwargs)`` buildable as ``create_model(name, ...)``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    _load_all()
    return sorted(_BUILDERS)


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` outputs."""
    _load_all()
    if name not in _BUILDERS:
        raise DlcvError(f"unknown model {name!r}; known models: {', '.join(sorted(_BUILDERS))}")
    try:
        return _BUILDERS[name](num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise DlcvError(f"model {name!r}: {exc}") from None
