"""A model as one plain torch class and a plain ``state_dict``: code that runs without dlcv, Lightning or timm.

The class holds only ``torch.nn`` layers and torch functions, so it runs where dlcv, Lightning and timm are not
installed (the course's grading machine).

The model is traced with ``torch.fx`` at one input, computing every value: branches on sizes follow that input,
``torch.nn`` layers are rebuilt in place (the state_dict's keys are the model's own), and a forward that branches on
values or calls anything outside torch and the standard library is refused in one line naming what. A second trace at
another batch finds the constants that follow the batch size, which the code then computes from its input; operations
newer than the target torch are written as their older equivalents, or refused (``dlcv.torch_versions``).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import operator
import re
import textwrap
import types

import torch
import torch.fx
from torch import nn

from dlcv.errors import DlcvError
from dlcv.torch_versions import check_source, layer_is_newer, older_equivalent, version

DEFAULT_TORCH = "1.12"  # what the exported code runs on unless told: the course machine's of 2022 and 2023

ALLOWED_MODULES = ("torch", "math", "operator", "builtins")  # what the traced forward may reference
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class _ValueProxy(torch.fx.Proxy):
    """A proxy that knows the value it stands for: sizes are read from it, and branches on it take its value."""

    def __getattr__(self, name):
        if name.startswith("__") or name in ("node", "tracer"):
            raise AttributeError(name)  # not yet set (copying, unpickling): never a traced attribute
        if name in ("shape", "ndim", "dtype", "device", "is_cuda", "size", "dim"):
            return getattr(self.tracer.values[self.node], name)
        return super().__getattr__(name)

    def __len__(self):
        return len(self.tracer.values[self.node])


class FixedInputTracer(torch.fx.Tracer):
    """A ``torch.fx`` tracer that computes each node's value as it traces ``root`` at ``example``.

    What ``torch_version`` lacks is traced as its older equivalent (see the module's text).

    Args:
        root: the model.
        example: the input it is traced at, float32 (N, 3, H, W).
        torch_version: the target torch as ``(major, minor)``.
    """

    def __init__(self, root: nn.Module, example: torch.Tensor, torch_version: tuple[int, int]):
        super().__init__(autowrap_modules=(math,))
        self.root_module, self.example, self.values, self.torch_version = root, example, {}, torch_version
        self.evaluating = False  # computing a node's value: modules and attributes are the real ones
        self.defaults: list = []  # the forward's other arguments, in order: fx gives each a placeholder

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        """Whether ``module`` stays one layer: one of ``torch.nn``'s (no container) that the target torch has.

        Such a layer is rebuilt from its constructor's arguments; a newer one is traced through.
        """
        return (type(module).__module__.startswith("torch.nn.modules") and not isinstance(module, CONTAINERS)
                and not layer_is_newer(module, self.torch_version))

    def proxy(self, node):
        """A proxy that knows its node's value (``_ValueProxy``)."""
        return _ValueProxy(node, self)

    def to_bool(self, obj) -> bool:
        """A branch on a traced value takes the branch its value at ``example`` takes.

        Raises:
            DlcvError: the branch is on a tensor's data, which a trace cannot keep.
        """
        value = self.values[obj.node]
        if isinstance(value, torch.Tensor):  # sizes are plain numbers here: a tensor is the data itself
            raise DlcvError(f"the model branches on the values of a tensor ({obj.node.name}), which a plain "
                            "torch trace cannot keep")
        return bool(value)

    def iter(self, obj):
        """Iterate a traced value as its value at ``example``."""
        return iter(self.values[obj.node])

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        """The real attribute while a value is computed, else fx's proxy for it."""
        return attr_val if self.evaluating else super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m, forward, args, kwargs):
        """Run the layer itself while a value is computed, else record its call."""
        return forward(*args, **kwargs) if self.evaluating else super().call_module(m, forward, args, kwargs)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        """Record a node (a function the target torch lacks as its older equivalent) and compute its value."""
        if kind == "call_function" and not self.evaluating:
            equivalent = older_equivalent(target, kwargs, self.torch_version)
            if equivalent is not None:  # recorded as the older torch functions it calls
                return equivalent(*args, **kwargs)
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self.evaluating = True
        try:
            self.values[proxy.node] = self._evaluate(kind, target, args, kwargs)
        finally:
            self.evaluating = False
        return proxy

    def _evaluate(self, kind, target, args, kwargs):
        """The value of one node at ``example``, from the values of its arguments."""
        real = lambda a: torch.fx.node.map_aggregate(a, lambda v: self.values[v.node] if isinstance(v, torch.fx.Proxy)
                                                     else v)  # noqa: E731
        args, kwargs = real(args), real(kwargs)
        if kind == "placeholder":
            seen = sum(node.op == "placeholder" for node in self.values)  # this one's place among them
            return self.example if seen == 0 else self.defaults[seen - 1]
        if kind == "get_attr":
            return _attribute(self.root_module, target)
        if kind == "call_module":
            return self.root_module.get_submodule(target)(*args, **kwargs)
        if kind == "call_method":
            return getattr(args[0], target)(*args[1:], **kwargs)
        return target(*args, **kwargs)


def _attribute(root: nn.Module, path: str):
    """The attribute at the dotted ``path`` below ``root``, read without ``nn.Module.__getattr__`` (fx patches it)."""
    *parents, name = path.split(".")
    for part in parents:
        root = root._modules[part]
    for store in (root._parameters, root._buffers, root._modules, root.__dict__):
        if name in store:
            return store[name]
    return object.__getattribute__(root, name)


def _constructor(module: nn.Module) -> str:
    """The call that builds ``module`` anew from the arguments it keeps (``nn.Conv2d(3, 32, ...)``)."""
    cls = type(module)
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name not in ("self", "device", "dtype") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    parts = []
    for p in params:
        if p.name == "bias" and p.default is True:
            value = module.bias is not None
        elif hasattr(module, p.name):
            value = getattr(module, p.name)
        elif p.default is not inspect.Parameter.empty:
            continue
        else:
            raise DlcvError(f"{cls.__name__}: cannot tell its constructor's argument {p.name} from the layer")
        if isinstance(value, torch.Tensor):
            raise DlcvError(f"{cls.__name__}: its argument {p.name} is a tensor, which a constructor call cannot hold")
        if p.default is not inspect.Parameter.empty and _same(value, p.default):
            continue
        parts.append(f"{p.name}={value!r}")
    return f"nn.{cls.__name__}({', '.join(parts)})"


def _same(a, b) -> bool:
    """Whether ``a`` equals ``b`` and is of its type (False for values that do not compare)."""
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 -- values that do not compare are not the default
        return False


def trace(model: nn.Module, example: torch.Tensor, torch_version: tuple[int, int]) -> torch.fx.GraphModule:
    """Trace ``model`` at ``example`` for ``torch_version``, its forward's other arguments at defaults.

    See the module's text for what is kept and what is refused.

    Args:
        model: the model; it is put in evaluation mode.
        example: the input, float32 (N, 3, H, W).
        torch_version: the target torch as ``(major, minor)``.

    Raises:
        DlcvError: the forward needs arguments beyond the images, branches on a tensor's values, has an output that
            depends on its other arguments, or cannot be traced by fx.
    """
    model = model.eval()
    tracer = FixedInputTracer(model, example, torch_version)
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    fixed = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.default is inspect.Parameter.empty for p in fixed):
        needed = ", ".join(p.name for p in fixed if p.default is inspect.Parameter.empty)
        raise DlcvError(f"{type(model).__name__}: its forward needs more than the images ({needed})")
    tracer.defaults = [p.default for p in fixed]
    try:
        with torch.no_grad():
            graph = tracer.trace(model, concrete_args={p.name: p.default for p in fixed} or None)
    except DlcvError:
        raise
    except Exception as exc:  # noqa: BLE001 -- fx raises many kinds for what it cannot trace
        raise DlcvError(f"{type(model).__name__}: cannot be traced to plain torch ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]})") from None
    finally:
        tracer.values.clear()  # every activation of the trace: freed now, not when the collector finds the cycle
    _drop_fixed_arguments(graph)
    return torch.fx.GraphModule(model, graph)


def _drop_fixed_arguments(graph: torch.fx.Graph) -> None:
    """Remove the placeholders fx gives the forward's other arguments, and the checks of their fixed values.

    The exported forward takes the images alone.
    """
    doomed, frontier = set(), [n for n in graph.nodes if n.op == "placeholder"][1:]
    while frontier:
        node = frontier.pop()
        if node not in doomed:
            doomed.add(node)
            frontier.extend(node.users)
    if any(node.op == "output" for node in doomed):
        raise DlcvError("the model's output depends on an argument of its forward other than the images")
    for node in reversed(list(graph.nodes)):
        if node in doomed:
            graph.erase_node(node)


def computes_alike(model: nn.Module, traced: torch.fx.GraphModule, other: torch.Tensor) -> bool:
    """Whether the trace computes what ``model`` does on ``other``, an input of another shape."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # fx prints the failing line itself
            want, got = model_outputs(model, other), model_outputs(traced, other)
    except Exception:  # noqa: BLE001 -- a trace fixed to its shape fails at another in many ways
        return False
    return want.shape == got.shape and torch.allclose(want, got, atol=1e-5, rtol=1e-4)


def model_outputs(model, x):
    """Return ``model(x)`` computed without gradients."""
    with torch.no_grad():
        return model(x)


def other_batch(example: torch.Tensor, size: int) -> torch.Tensor:
    """``example``'s images repeated or cut to a batch of ``size``."""
    return example.repeat(-(-size // len(example)), *([1] * (example.dim() - 1)))[:size]


def batch_generic(model: nn.Module, example: torch.Tensor, traced: torch.fx.GraphModule,
                  torch_version: tuple[int, int]) -> bool:
    """Make ``traced`` (``model`` at ``example``) run at any batch where it can, and say whether it does.

    ``model`` is traced again at another batch, and each constant that follows the batch size (``reshape(4, 65, ...)``
    at batch 4) becomes a multiple of the input's ``size(0)``. The result must compute ``model``'s outputs at two
    further batches; where it does not, ``traced`` is left as it was, running at its own batch only.
    """
    batch = len(example)
    second = 2 if batch != 2 else 3
    again = trace(model, other_batch(example, second), torch_version)
    mine, theirs = list(traced.graph.nodes), list(again.graph.nodes)
    if len(mine) != len(theirs):
        return False
    place = {node: i for i, node in enumerate(mine)} | {node: i for i, node in enumerate(theirs)}
    changes = []
    for a, b in zip(mine, theirs):
        if (a.op, a.target) != (b.op, b.target) and a.op != "get_attr":
            return False
        args = _follow_batch((a.args, a.kwargs), (b.args, b.kwargs), batch, second, place)
        if args is _DIFFERENT:
            return False
        if args != (a.args, a.kwargs):
            changes.append((a, args))
    if not changes:
        return all(computes_alike(model, traced, other_batch(example, n)) for n in (1, 3) if n != batch)
    saved = [(node, node.args, node.kwargs) for node, _ in changes]
    graph = traced.graph
    with graph.inserting_after(mine[0]):
        size = graph.call_method("size", (mine[0], 0))
    for node, (args, kwargs) in changes:
        with graph.inserting_before(node):
            node.args, node.kwargs = _with_batch(args, size, graph), _with_batch(kwargs, size, graph)
    traced.recompile()
    checks = [n for n in (1, 3, 5) if n not in (batch, second)][:2]
    if all(computes_alike(model, traced, other_batch(example, n)) for n in checks):
        return True
    for node, args, kwargs in saved:  # it does not hold: back to the trace of the one batch
        node.args, node.kwargs = args, kwargs
    graph.eliminate_dead_code()
    traced.recompile()
    return False


class _Multiple:
    """A constant that is ``factor`` times the batch size."""

    def __init__(self, factor: int):
        self.factor = factor

    def __eq__(self, other):
        return isinstance(other, _Multiple) and other.factor == self.factor

    __hash__ = None


_DIFFERENT = object()  # two traces' arguments that do not follow the batch size


def _follow_batch(a, b, batch: int, second: int, place: dict):
    """Match an argument of two traces: integers that scale with the batch become ``_Multiple``.

    ``a`` was traced at ``batch`` and ``b`` at ``second``; ``_DIFFERENT`` where the two differ otherwise.
    """
    if isinstance(a, torch.fx.Node) or isinstance(b, torch.fx.Node):
        return a if isinstance(a, torch.fx.Node) and isinstance(b, torch.fx.Node) and place[a] == place[b] \
            else _DIFFERENT
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b) and type(a) is type(b):
        parts = [_follow_batch(x, y, batch, second, place) for x, y in zip(a, b)]
        return _DIFFERENT if any(p is _DIFFERENT for p in parts) else (
            tuple(parts) if isinstance(a, tuple) else list(parts))
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        parts = {k: _follow_batch(a[k], b[k], batch, second, place) for k in a}
        return _DIFFERENT if any(p is _DIFFERENT for p in parts.values()) else parts
    if isinstance(a, slice) and isinstance(b, slice):
        parts = _follow_batch((a.start, a.stop, a.step), (b.start, b.stop, b.step), batch, second, place)
        return _DIFFERENT if parts is _DIFFERENT else slice(*parts)
    if type(a) is int and type(b) is int and a != b:
        return _Multiple(a // batch) if a % batch == 0 and b % second == 0 and a // batch == b // second \
            else _DIFFERENT
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        return a if same else _DIFFERENT
    try:
        return a if type(a) is type(b) and a == b else _DIFFERENT
    except Exception:  # noqa: BLE001 -- values that do not compare are not the same
        return _DIFFERENT


def _with_batch(value, size: torch.fx.Node, graph: torch.fx.Graph):
    """``value`` with each ``_Multiple`` as the node computing it from ``size`` (the input's batch size)."""
    if isinstance(value, _Multiple):
        return size if value.factor == 1 else graph.call_function(operator.mul, (size, value.factor))
    if isinstance(value, (tuple, list)):
        return type(value)(_with_batch(v, size, graph) for v in value)
    if isinstance(value, dict):
        return {k: _with_batch(v, size, graph) for k, v in value.items()}
    if isinstance(value, slice):
        return slice(*(_with_batch(v, size, graph) for v in (value.start, value.stop, value.step)))
    return value


def plain_source(model: nn.Module, example: torch.Tensor, torch_version: str = DEFAULT_TORCH
                 ) -> tuple[str, dict, bool, bool]:
    """Write ``model`` as a plain torch module: ``(source, state_dict, any_size, any_batch)``.

    The source (Python 3.8 syntax, torch and the standard library only) defines ``Net``, whose instance loads
    ``state_dict`` strictly and computes what ``model`` does on inputs of ``example``'s shape, calling only what
    ``torch_version`` has; an input of another shape is refused in one line (a ``ValueError``).

    Args:
        model: the model; it is put in evaluation mode.
        example: the input it is traced at, float32 (N, 3, H, W).
        torch_version: the torch the code must run on (``"1.12"``).

    Returns:
        the module's source, its state_dict, and whether ``Net`` takes inputs of any height and width
        (``any_size``) and of any batch (``any_batch``).

    Raises:
        DlcvError: the model cannot be traced, calls what is outside torch, or needs an operation that
            ``torch_version`` lacks and that has no older equivalent (named, with the first torch that has it).
    """
    target = version(torch_version)
    traced = trace(model, example, target)  # model is now in evaluation mode
    any_batch = batch_generic(model, example, traced, target)
    any_size = computes_alike(model, traced, torch.randn(*example.shape[:-2], example.shape[-2] + 16,
                                                          example.shape[-1] + 8))
    for node in traced.graph.nodes:
        node.type = None  # no annotations: the code names nothing but torch
        if node.op == "call_function" and node.kwargs:
            node.kwargs = _without_defaults(node.target, node.kwargs)
    code = traced.graph.python_code(root_module="self")
    foreign = sorted(name for name, value in code.globals.items() if not _allowed(value))
    if foreign:
        raise DlcvError(f"{type(model).__name__}: its forward calls {', '.join(foreign)}, outside torch")
    layers, tensors = {}, {}  # by dotted path, in the order the forward first uses them
    for node in traced.graph.nodes:
        if node.op == "call_module":
            layers.setdefault(node.target, traced.get_submodule(node.target))
        elif node.op == "get_attr":
            value = _attribute(traced, node.target)
            if not isinstance(value, torch.Tensor):
                raise DlcvError(f"{type(model).__name__}: its forward reads {node.target}, not a tensor")
            tensors.setdefault(node.target, value)
    check_source(code.src, layers, target)
    built = "\n".join(f"        _put(self, {path!r}, {_constructor(layer)})" for path, layer in layers.items())
    held = "\n".join(f"        _hold(self, {path!r}, {tuple(value.shape)!r}, {isinstance(value, nn.Parameter)!r}, "
                     f"{str(value.dtype).split('.')[1]!r})" for path, value in tensors.items())
    forward = textwrap.indent(re.sub(r"\n\s*\n", "\n", code.src.strip()), "    ")
    first, rest = forward.rstrip().split("\n", 1)
    expected = (None if any_batch else len(example), None if any_size else tuple(example.shape[-2:]))
    guard = (f"        _expect({_input_name(traced)}, {expected[0]!r}, {expected[1]!r})\n"
             if expected != (None, None) else "")
    source = TEMPLATE.format(built=built or "        pass", held=held, forward=f"{first}\n{guard}{rest}")
    state = {f"{path}.{k}": v for path, layer in layers.items() for k, v in layer.state_dict().items()}
    state.update(tensors)
    return source, {k: v.detach().clone().contiguous() for k, v in state.items()}, any_size, any_batch


def _input_name(traced: torch.fx.GraphModule) -> str:
    """The name of the traced forward's input."""
    return next(node.name for node in traced.graph.nodes if node.op == "placeholder")


def _without_defaults(function, kwargs: dict) -> dict:
    """``kwargs`` less those at ``function``'s defaults, which the trace spells out, so that older torch runs it too."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a C function without a signature: kept as traced
        return kwargs
    return {k: v for k, v in kwargs.items() if k not in params or not _same(v, params[k].default)}


def _allowed(value) -> bool:
    """Whether the traced code may name ``value``: a module, function or object of torch, math, operator or builtins."""
    name = value.__name__ if isinstance(value, types.ModuleType) else (
        getattr(value, "__module__", None) or type(value).__module__)
    return name.split(".")[0] in ALLOWED_MODULES


TEMPLATE = '''"""Net: a trained model as plain torch code, written by dlcv (torch and the standard library only)."""
import math
import operator

import torch
from torch import nn


def _parent(root, path):
    """``(the module holding the dotted path's last name, that name)``, making plain containers on the way."""
    *parents, name = path.split(".")
    for part in parents:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    return root, name


def _put(root, path, module):
    """``module`` at the dotted ``path`` below ``root``."""
    root, name = _parent(root, path)
    root.add_module(name, module)


def _hold(root, path, shape, trainable, dtype):
    """An empty parameter or buffer of ``shape`` and ``dtype`` at the dotted ``path`` (its values come with the
    state_dict)."""
    root, name = _parent(root, path)
    tensor = torch.empty(shape, dtype=getattr(torch, dtype))
    if trainable:
        root.register_parameter(name, nn.Parameter(tensor))
    else:
        root.register_buffer(name, tensor)


def _expect(x, batch, size):
    """Refuse, in one line, an input of a batch or size this code was not written for."""
    if batch is not None and x.shape[0] != batch:
        raise ValueError("this model was exported for batches of {{}} images, not {{}}".format(batch, x.shape[0]))
    if size is not None and tuple(x.shape[-2:]) != size:
        raise ValueError("this model was exported for {{}}x{{}} inputs, not {{}}x{{}}".format(
            size[1], size[0], x.shape[-1], x.shape[-2]))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
{built}
{held}

{forward}
'''
