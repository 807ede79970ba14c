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
_TASKS: dict[str, str] = {}
_PASSED_TO: dict[str, tuple[Callable, tuple[str, ...]]] = {}  # a builder's **kwargs: whose arguments, less the fixed
MODEL_TASKS = ("classify", "segment")
# Modules whose import registers builders; imported on first lookup, so that importing dlcv.models is cheap.
_MODULES = ("dlcv.models.small", "dlcv.models.pretrained", "dlcv.models.segmentation",
            "dlcv.models.transfer")


# Arguments naming pretrained weights, which a rebuild from a checkpoint must not read (it holds every weight).
WEIGHT_ARGS = ("weights", "backbone_weights", "encoder_weights")


def rebuild_args(args: dict) -> dict:
    """Return a recipe's model arguments with every pretrained-weights argument set to None."""
    return {k: (None if k in WEIGHT_ARGS else v) for k, v in args.items()}


def register_model(name: str, task: str = "classify", passes_to: Callable | None = None,
                   fixed: tuple[str, ...] = ()) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder ``fn(num_classes=..., **args)`` (function or class) as ``create_model(name, ...)``.

    The model's arguments are ``fn``'s parameters, their annotations the rules, and those of ``passes_to``.

    Args:
        name: the model's name in recipes (``model.name``).
        task: ``classify`` (logits per image) or ``segment`` (logits per pixel).
        passes_to: what ``fn`` passes its ``**kwargs`` to, whose parameters are model arguments too.
        fixed: parameters of ``passes_to`` that ``fn`` sets itself, which are no model arguments.

    Returns:
        The decorator; it returns ``fn`` unchanged.

    Raises:
        ValueError: if ``name`` is registered twice (when the decorator is applied).
    """

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        _TASKS[name] = task
        if passes_to is not None:
            _PASSED_TO[name] = (passes_to, fixed)
        return fn

    return wrap


def _load_all() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_models(task: str | None = None) -> list[str]:
    """Return the registered model names of ``task`` (None: every task), sorted."""
    _load_all()
    return sorted(n for n in _BUILDERS if task is None or _TASKS[n] == task)


def model_task(name: str) -> str | None:
    """Return what the registered model ``name`` does (one of ``MODEL_TASKS``), or None for an unknown name."""
    _load_all()
    return _TASKS.get(name)


def model_summary(name: str) -> str:
    """Return the first line of model ``name``'s builder docstring, its description in the model list."""
    _load_all()
    return ((_BUILDERS[name].__doc__ or "").strip().splitlines() or [""])[0]


@functools.cache
def model_args(name: str):
    """Return model ``name``'s arguments as a strict pydantic model, their annotations the rules.

    The fields are the builder's parameters and those of what its ``**kwargs`` pass to; a builder whose ``**kwargs``
    go to a library (no ``passes_to``) also takes unknown keys.
    """
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


def check_model_args(name: str, task: str | None, args: dict) -> None:
    """Check ``args`` against model ``name``'s argument rules, building nothing.

    Args:
        name: the model's registered name.
        task: the task the model must be (``classify`` or ``segment``); None: any.
        args: the recipe's ``model.args``.

    Raises:
        DlcvError: if ``name`` is no registered model (of ``task``), or an argument is unknown or breaks its rule
            (one line naming it and what a good value is).
    """
    from pydantic import ValidationError

    from dlcv.rules import RuleReason, describe_field

    _load_all()
    if name not in _BUILDERS or (task is not None and _TASKS[name] != task):
        raise DlcvError(f"unknown {f'{task} model' if task else 'model'} {shown(name)}; known: "
                        f"{', '.join(list_models(task))}")
    schema = model_args(name)
    try:
        schema.model_validate(args)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            raise DlcvError(f"model.args.{key} is not an argument of model {name!r}") from None
        cause = (error.get("ctx") or {}).get("error")
        why = f": {cause}" if isinstance(cause, RuleReason) else ""
        raise DlcvError(f"model.args.{key} must be {describe_field(schema.model_fields[key])}, got "
                        f"{shown(args.get(key))}{why}") from None


TRAINING_COPIES = 4  # float32 weights, their gradients and two optimiser moments (Adam's, AdamW's)


def check_training_memory(name: str, task: str, args: dict, num_classes: int, accelerator: str = "auto") -> None:
    """Refuse a model whose training state alone fits neither the machine's memory nor its GPU's.

    The state is ``TRAINING_COPIES`` float32 copies of the parameters, counted on the meta device (no arithmetic,
    memory or weights read); a model the meta device cannot build is left to its own build.

    Args:
        name: the model's registered name.
        task: the task the model must be (``classify`` or ``segment``).
        args: the recipe's ``model.args``; weights arguments are ignored.
        num_classes: the head's outputs.
        accelerator: the recipe's ``train.accelerator``; ``cpu`` leaves the GPU's memory out.

    Raises:
        DlcvError: if ``check_model_args`` refuses ``args``, or the state does not fit (one line with the estimate:
            ``model.args: model NAME has N parameters; ... needs ~X GB, this machine has Y GB of memory``).
    """
    from dlcv.rules import FLOAT32, memory_refusal

    args = rebuild_args(args)
    check_model_args(name, task, args)
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


def create_model(name: str, num_classes: int, task: str | None = None, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with ``num_classes`` outputs.

    Args:
        name: the model's registered name (``list_models()``).
        num_classes: the classes it predicts, per image or per pixel.
        task: the task it must be (``classify`` or ``segment``); None: any.
        **kwargs: the model's arguments (``model.args``).

    Returns:
        The model, untrained unless its arguments name weights.

    Raises:
        DlcvError: if an argument breaks its rule, or the builder refuses the arguments (one line).
    """
    check_model_args(name, task, kwargs)
    try:
        return _BUILDERS[name](num_classes=num_classes, **kwargs)
    except DlcvError:
        raise
    except Exception as exc:  # a builder's own refusal: a bare assert, a ValueError, torch's shape checks
        raise DlcvError(f"model.args cannot build model {name!r}: {exception_line(exc)}") from None
