"""A trained model as one plain torch class of ``torch.nn`` layers and torch functions, and a plain ``state_dict``: it
runs where dlcv, Lightning and timm are not installed (the course's grading machine) and in ONNX.

Traced with ``torch.fx`` at one input, computing every value: branches on sizes follow that input, ``torch.nn`` layers
are rebuilt in place (the state_dict's keys are the model's own), and a forward that branches on values or calls
anything outside torch and the standard library is refused in one line naming what.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import math
import re
import textwrap
import types
import warnings

import numpy as np
import torch
import torch.fx
from torch import nn

from dlcv.checkpoints import load_predictor
from dlcv.errors import DlcvError
from dlcv.io import atomic_path, check_output_file, staged_folder
from dlcv.models.weights import load_state_file
from dlcv.recipes import RECIPES

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
    """Traces ``root`` at ``example``, computing each node's value as it goes (see the module's text)."""

    def __init__(self, root: nn.Module, example: torch.Tensor):
        super().__init__(autowrap_modules=(math,))
        self.root_module, self.example, self.values = root, example, {}
        self.evaluating = False  # computing a node's value: modules and attributes are the real ones

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        """A layer of ``torch.nn`` itself (not a container): rebuilt from its constructor's arguments."""
        return type(module).__module__.startswith("torch.nn.modules") and not isinstance(module, CONTAINERS)

    def proxy(self, node):
        return _ValueProxy(node, self)

    def to_bool(self, obj) -> bool:
        value = self.values[obj.node]
        if isinstance(value, torch.Tensor):  # sizes are plain numbers here: a tensor is the data itself
            raise DlcvError(f"the model branches on the values of a tensor ({obj.node.name}), which a plain "
                            "torch trace cannot keep")
        return bool(value)

    def iter(self, obj):
        return iter(self.values[obj.node])

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        return attr_val if self.evaluating else super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m, forward, args, kwargs):
        return forward(*args, **kwargs) if self.evaluating else super().call_module(m, forward, args, kwargs)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        self.evaluating = True
        try:
            self.values[proxy.node] = self._evaluate(kind, target, args, kwargs)
        finally:
            self.evaluating = False
        return proxy

    def _evaluate(self, kind, target, args, kwargs):
        real = lambda a: torch.fx.node.map_aggregate(a, lambda v: self.values[v.node] if isinstance(v, torch.fx.Proxy)
                                                     else v)  # noqa: E731
        args, kwargs = real(args), real(kwargs)
        if kind == "placeholder":
            return self.example
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
    """``nn.Conv2d(3, 32, kernel_size=(3, 3), ...)``: the call building ``module`` anew from the arguments it keeps."""
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
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 -- values that do not compare are not the default
        return False


def trace(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``model`` traced at ``example`` (see the module's text); refused in one line where it cannot be."""
    model = model.eval()
    tracer = FixedInputTracer(model, example)
    try:
        with torch.no_grad():
            graph = tracer.trace(model)
    except DlcvError:
        raise
    except Exception as exc:  # noqa: BLE001 -- fx raises many kinds for what it cannot trace
        raise DlcvError(f"{type(model).__name__}: cannot be traced to plain torch ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160]})") from None
    return torch.fx.GraphModule(model, graph)


def computes_alike(model: nn.Module, traced: torch.fx.GraphModule, other: torch.Tensor) -> bool:
    """Whether the trace computes what ``model`` does on ``other``, an input of another shape than it was traced at."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # fx prints the failing line itself
            want, got = _outputs(model, other), _outputs(traced, other)
    except Exception:  # noqa: BLE001 -- a trace fixed to its shape fails at another in many ways
        return False
    return want.shape == got.shape and torch.allclose(want, got, atol=1e-5, rtol=1e-4)


def plain_source(model: nn.Module, example: torch.Tensor) -> tuple[str, dict, bool, bool]:
    """``(source, state_dict, any_size, any_batch)``: a Python module (3.8 syntax, torch and the standard library only)
    defining ``Net``, whose instance loads ``state_dict`` strictly and computes what ``model`` does on inputs of
    ``example``'s shape (of any height and width where ``any_size``, of any batch where ``any_batch``)."""
    traced = trace(model, example)  # model is now in evaluation mode
    any_size = computes_alike(model, traced, torch.randn(*example.shape[:-2], example.shape[-2] + 16,
                                                          example.shape[-1] + 8))
    any_batch = computes_alike(model, traced, example[:3])
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
    built = "\n".join(f"        _put(self, {path!r}, {_constructor(layer)})" for path, layer in layers.items())
    held = "\n".join(f"        _hold(self, {path!r}, {tuple(value.shape)!r}, {isinstance(value, nn.Parameter)!r})"
                     for path, value in tensors.items())
    forward = textwrap.indent(re.sub(r"\n\s*\n", "\n", code.src.strip()), "    ")
    source = TEMPLATE.format(built=built or "        pass", held=held, forward=forward.rstrip())
    state = {f"{path}.{k}": v for path, layer in layers.items() for k, v in layer.state_dict().items()}
    state.update(tensors)
    return source, {k: v.detach().clone().contiguous() for k, v in state.items()}, any_size, any_batch


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


def _hold(root, path, shape, trainable):
    """An empty parameter or buffer of ``shape`` at the dotted ``path`` (its values come with the state_dict)."""
    root, name = _parent(root, path)
    tensor = torch.empty(shape)
    if trainable:
        root.register_parameter(name, nn.Parameter(tensor))
    else:
        root.register_buffer(name, tensor)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
{built}
{held}

{forward}
'''


# --- a checkpoint, exported -----------------------------------------------------------------------------------
def exported_tasks() -> tuple[str, ...]:
    """The tasks whose checkpoints export: those whose recipe gives the batch to trace at (``TRACE_BATCH``)."""
    return tuple(dict.fromkeys(kind.model_fields["task"].default for kind in RECIPES.values() if kind.TRACE_BATCH))


def checkpoint_model(path, task: str | None = None):
    """``(model, recipe, example)`` of a dlcv classification or segmentation checkpoint (of ``task`` where given):
    the model for inference and a random input of its recipe's ``TRACE_BATCH`` images at the size ``predict`` gives."""
    model, recipe = load_predictor(path, task or exported_tasks())
    side = recipe.input_side()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(recipe.TRACE_BATCH, 3, side, side, generator=generator)
    return model.eval(), recipe, example


def export_checkpoint(checkpoint, fmt: str, output, overwrite: bool = False) -> dict:
    """``dlcv export``: a checkpoint's model as plain torch (a folder of ``model.py`` and ``weights.pth``) or ONNX (one
    file, dynamic batch), checked against the checkpoint's outputs; returns the output and the largest difference."""
    if fmt == "onnx":
        output = check_output_file(output, overwrite, inputs=(checkpoint,))
        if output.suffix.lower() != ".onnx":  # a runtime opens it by its name
            raise DlcvError(f"--output {output}: an ONNX model's file name ends in .onnx")
    model, recipe, example = checkpoint_model(checkpoint)
    if fmt == "torch":
        source, state, any_size, _ = plain_source(model, example)
        with staged_folder(output, overwrite, inputs=(checkpoint,), kind="plain torch model") as staging:
            (staging / "model.py").write_text(source)
            torch.save(state, staging / "weights.pth")
            difference = _plain_difference(staging, model, example)
        return {"output": output, "difference": difference, "any_size": any_size, "side": example.shape[-1]}
    return {"output": output, "difference": _onnx(model, example, output), "side": example.shape[-1]}


def _outputs(model, x):
    with torch.no_grad():
        return model(x)


def _plain_difference(folder, model, example) -> float:
    """The largest difference between the plain model in ``folder`` and ``model`` on ``example``."""
    spec = importlib.util.spec_from_file_location("dlcv_plain_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(load_state_file(folder / "weights.pth"), strict=True)
    return (_outputs(net.eval(), example) - _outputs(model, example)).abs().max().item()


def _onnx(model, example, output) -> float:
    """Write the traced model as ONNX (dynamic batch); onnxruntime's largest difference from it at two batches."""
    traced = trace(model, example)
    try:
        import onnxruntime
    except ImportError:
        raise DlcvError("--format onnx needs onnxruntime (pip install onnxruntime onnx)") from None
    with atomic_path(output) as tmp:
        with warnings.catch_warnings():  # the exporter's notes on shape inference are not the user's to read
            warnings.simplefilter("ignore")
            torch.onnx.export(traced, (example,), str(tmp), input_names=["images"], output_names=["scores"],
                              dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}}, opset_version=17,
                              dynamo=False)
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        worst = 0.0
        for x in (example, example[:3]):
            got = session.run(None, {"images": x.numpy()})[0]
            worst = max(worst, float(np.abs(got - _outputs(model, x).numpy()).max()))
        if worst > 1e-4:
            raise DlcvError(f"{output}: onnxruntime's outputs differ from the checkpoint's by {worst:.2e} (over "
                            "1e-4); not written")
    return worst
