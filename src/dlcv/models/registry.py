"""One registry of model builders, so that a recipe file can name any model."""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from collections.abc import Callable

import torch
from torch import nn

from dlcv.errors import DlcvError, exception_line, shown

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
_PASSED_TO: dict[str, tuple[Callable, tuple[str, ...]]] = {}  # a builder's **kwargs: whose arguments, less the fixed
KINDS = ("classify", "segment")
# Modules whose import registers builders; imported on first lookup so that listing is cheap.
_MODULES = ("dlcv.models.small", "dlcv.models.pretrained", "dlcv.models.segmentation",
            "dlcv.models.transfer")


# Arguments naming pretrained weights, which a rebuild from a checkpoint must not read (it holds every weight).
WEIGHT_ARGS = ("weights", "backbone_weights", "encoder_weights")


def rebuild_args(args: dict) -> dict:
    """A recipe's model arguments with every pretrained-weights argument set to None."""
    return {k: (None if k in WEIGHT_ARGS else v) for k, v in args.items()}


def register_model(name: str, kind: str = "classify", passes_to: Callable | None = None,
                   fixed: tuple[str, ...] = ()) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make ``fn(num_classes=..., **kwargs)`` (function or class) buildable as ``create_model(name, ...)``.

    ``kind``: ``classify`` (logits per image) or ``segment`` (per pixel). The model's arguments are ``fn``'s parameters
    (annotations as rules) and, where ``fn`` passes ``**kwargs`` to ``passes_to``, its too, less the ``fixed`` ones.
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        _KINDS[name] = kind
        if passes_to is not None:
            _PASSED_TO[name] = (passes_to, fixed)
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


@functools.cache
def model_args(name: str):
    """The arguments of model ``name`` as a strict pydantic model: its builder's parameters and those its ``**kwargs``
    pass to, annotations as rules; a builder whose ``**kwargs`` go to a library also takes unknown keys."""
    from pydantic import ConfigDict, create_model

    _load_all()
    target, fixed = _PASSED_TO.get(name, (None, ()))
    fields, extra = {}, "forbid"
    for fn in filter(None, (_BUILDERS[name], target)):
        function = fn.__init__ if isinstance(fn, type) else fn
        hints = typing.get_type_hints(function, include_extras=True)
        for param in inspect.signature(function).parameters.values():
            if param.kind is param.VAR_KEYWORD and target is None:
                extra = "allow"
            if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL) or param.name in ("self", "num_classes",
                                                                                          *fixed, *fields):
                continue
            fields[param.name] = (hints.get(param.name, typing.Any),
                                  ... if param.default is param.empty else param.default)
    return create_model(f"{name}_args", __config__=ConfigDict(extra=extra, strict=True, arbitrary_types_allowed=True),
                        **fields)


def check_model_args(name: str, kind: str | None, args: dict) -> None:
    """``args`` are arguments of the registered model ``name`` (of ``kind``, when given), each by its rule; else one
    line naming the argument and what a good value is. Nothing is built."""
    from pydantic import ValidationError

    from dlcv.rules import describe_field

    _load_all()
    if name not in _BUILDERS or (kind is not None and _KINDS[name] != kind):
        raise DlcvError(f"unknown {f'{kind} model' if kind else 'model'} {shown(name)}; known: "
                        f"{', '.join(list_models(kind))}")
    schema = model_args(name)
    try:
        schema.model_validate(args)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            raise DlcvError(f"model.args.{key} is not an argument of model {name!r}") from None
        raise DlcvError(f"model.args.{key} must be {describe_field(schema.model_fields[key])}, got "
                        f"{shown(args.get(key))}") from None


TRAINING_COPIES = 4  # float32 weights, their gradients and two optimiser moments (Adam's, AdamW's)


def check_training_memory(name: str, kind: str, args: dict, num_classes: int, accelerator: str = "auto") -> None:
    """Refuse, in one line with the estimate, a model whose training state alone exceeds the machine's memory (or its
    GPU's): ``TRAINING_COPIES`` float32 copies of its parameters, counted on the meta device (no arithmetic, no
    memory, no weights read). A model the meta device cannot build is left to its build.

    Raises:
        DlcvError: ``model.args: model NAME has N parameters; ... needs ~X GB, this machine has Y GB of memory``.
    """
    from dlcv.rules import FLOAT32, memory_refusal

    args = rebuild_args(args)
    check_model_args(name, kind, args)
    try:
        with torch.device("meta"):
            model = _BUILDERS[name](num_classes=num_classes, **args)
    except Exception:  # a builder that needs real tensors: its own build says what is wrong
        return
    count = sum(p.numel() for p in model.parameters())
    refusal = memory_refusal(f"model.args: model {name!r} has {count:,} parameters; training them (weights, "
                             "gradients and two optimiser moments in float32)", count * FLOAT32 * TRAINING_COPIES,
                             lambda limit: f"{limit // (FLOAT32 * TRAINING_COPIES):,} parameters (smaller widths)",
                             accelerator)
    if refusal:
        raise DlcvError(refusal)


def create_model(name: str, num_classes: int, kind: str | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` (of ``kind`` if given) with ``num_classes`` outputs; refusals as one line."""
    check_model_args(name, kind, kwargs)
    try:
        return _BUILDERS[name](num_classes=num_classes, **kwargs)
    except DlcvError:
        raise
    except Exception as exc:  # a builder's own refusal: a bare assert, a ValueError, torch's shape checks
        raise DlcvError(f"model.args cannot build model {name!r}: {exception_line(exc)}") from None
