"""A model's layer table (name, type, output shape, parameters) by forward hooks on a dummy input, and its diagram."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from dlcv.errors import DlcvError
from dlcv.models import create_model, rebuild_args


@dataclass(frozen=True)
class Layer:
    """One row of a layer table."""

    name: str
    type_name: str
    output_shape: str  # "64x16x16" per sample; "-" when the forward pass did not call it
    parameters: int


def _shape_text(output) -> str:
    """Return the per-sample shape of a module's output as text (``64x16x16``), or ``-`` for no tensor."""
    if isinstance(output, torch.Tensor):
        return "x".join(str(s) for s in output.shape[1:]) or "scalar"
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return ", ".join(p for p in map(_shape_text, output) if p != "-") or "-"
    return "-"


@dataclass
class Trace:
    """What one forward pass of a dummy input showed: every module's output shape and call order."""

    model: object
    shapes: dict  # module name -> output shape text, for modules the forward pass called
    started: dict  # module name -> order in which its forward began
    output: str  # the model's output shape

    def _children(self, name: str) -> list[str]:
        module = self.model.get_submodule(name) if name else self.model
        prefix = f"{name}." if name else ""
        return [prefix + child for child, _ in module.named_children()]

    def _settle(self, names: list[str]) -> list[str]:
        """Replace each module the forward pass did not call by its children (its parent calls them one by one)."""
        out = []
        for name in names:
            children = self._children(name)
            out += self._settle(children) if name not in self.shapes and children else [name]
        return out

    def view(self, max_rows: int) -> list[Layer]:
        """Return the deepest expansion of the module tree that fits in ``max_rows`` rows, in call order.

        At least the top level is shown; modules never called come last, with ``-`` as their shape.
        """
        names = self._settle(self._children(""))
        while True:
            deeper = self._settle([c for n in names for c in (self._children(n) or [n])])
            if deeper == names or len(deeper) > max_rows:
                break
            names = deeper
        names.sort(key=lambda n: self.started.get(n, len(self.started)))
        return [Layer(n, type(self.model.get_submodule(n)).__name__, self.shapes.get(n, "-"),
                      sum(p.numel() for p in self.model.get_submodule(n).parameters())) for n in names]


def trace_model(model, example) -> Trace:
    """Run ``example`` through ``model`` once, with hooks on every module that record their output shapes.

    Args:
        model: the network; it is left in eval mode.
        example: an input batch, e.g. a (1, 3, H, W) tensor, run without gradients.

    Returns:
        the ``Trace``: each called module's output shape and call order, and the model's output shape.
    """
    shapes: dict[str, str] = {}
    started: dict[str, int] = {}

    def pre_hook(name, _module, _inputs):
        started.setdefault(name, len(started))

    def hook(name, _module, _inputs, output):
        shapes.setdefault(name, _shape_text(output))

    handles = []
    for name, module in model.named_modules():
        if name:
            handles += [module.register_forward_pre_hook(partial(pre_hook, name)),
                        module.register_forward_hook(partial(hook, name))]
    try:
        with torch.no_grad():
            output = model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    return Trace(model, shapes, started, _shape_text(output))


def build_for_run(recipe, num_classes: int | None = None):
    """Build a run's model from its recipe, never with pretrained weights, and trace a dummy input through it.

    Args:
        recipe: the run's recipe.
        num_classes: the run's class count where the task does not fix it; None: 50, the course's.

    Returns:
        ``(model, input description such as "3x32x32", trace)``.

    Raises:
        DlcvError: if the task has no architecture to show, or the model cannot be built from its arguments.
    """
    task, side = recipe.task, recipe.input_side()
    if side is None:
        raise DlcvError(f"run {recipe.name!r}: no architecture for task {task!r}")
    num_classes = recipe.CLASSES or num_classes or 50

    def build(device: str):
        with torch.device(device):
            model = create_model(recipe.model.name, num_classes=num_classes, task=task,
                                 **rebuild_args(dict(recipe.model.args)))
            return model, trace_model(model, torch.zeros(1, 3, side, side))

    # The meta device gives shapes without arithmetic; a model that meta tensors cannot run is traced on the CPU.
    try:
        model, trace = build("meta")
    except (NotImplementedError, RuntimeError):
        model, trace = build("cpu")
    return model, f"3x{side}x{side}", trace
