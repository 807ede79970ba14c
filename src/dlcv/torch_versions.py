"""What an older torch lacks, for code that must run on the course's machine.

Each newer operation a traced model may reach, the torch that first has it and its older equivalent; and the check of
an exported model's source against a torch version (torch 1.13's names from ``export_api/``, written by
``tools/torch_api.py`` under Debian's torch).
"""

from __future__ import annotations

import ast
import functools
import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlcv.errors import DlcvError

OLDEST = "1.4"  # the oldest torch the course graded on; nothing older is a target
API = Path(__file__).resolve().parent / "export_api"


def version(text: str) -> tuple[int, int]:
    """Parse a torch version such as ``1.13.1+cu117`` into ``(major, minor)``.

    Raises:
        DlcvError: not a version, or older than ``OLDEST``.
    """
    found = re.fullmatch(r"([0-9]+)\.([0-9]+)(\.[0-9]+)?([+a-z].*)?", str(text).strip())
    if found is None:
        raise DlcvError(f"torch {text!r}: give a version such as 1.12 or 2.4")
    parsed = int(found.group(1)), int(found.group(2))
    if parsed < version_tuple(OLDEST):
        raise DlcvError(f"torch {text}: the oldest torch the exported code is written for is {OLDEST}")
    return parsed


def version_tuple(text: str) -> tuple[int, int]:
    """Return ``(major, minor)`` of a dotted version, unchecked."""
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


# --- older equivalents ---------------------------------------------------------------------------------------
def attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """``F.scaled_dot_product_attention`` (torch 2.0) in evaluation, as matmul and softmax (timm's unfused path)."""
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    if enable_gqa and key.size(-3) != query.size(-3):
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    scores = torch.matmul(query * scale, key.transpose(-2, -1))
    if is_causal:
        blocked = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool).triu(1)
        scores = scores.masked_fill(blocked.to(query.device), float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(attn_mask.logical_not(), float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return torch.matmul(scores.softmax(-1), value)


def silu(x, inplace=False):
    return x * torch.sigmoid(x)


def hardswish(x, inplace=False):
    return x * F.relu6(x + 3.0) / 6.0


def hardsigmoid(x, inplace=False):
    return F.relu6(x + 3.0) / 6.0


def mish(x, inplace=False):
    return x * torch.tanh(F.softplus(x))


def gelu(x, approximate="none"):
    """``F.gelu``; its tanh form (torch 1.12's ``approximate``) written out."""
    if approximate == "none":
        return F.gelu(x)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """``F.rms_norm`` (torch 2.4) as its formula."""
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    out = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
    return out * weight if weight is not None else out


# Functions newer than torch 1.4, by their torch name: (the first torch that has them, their older equivalent).
NEWER_FUNCTIONS = {
    "torch.nn.functional.scaled_dot_product_attention": ("2.0", attention),
    "torch.nn.functional.silu": ("1.7", silu),
    "torch.nn.functional.hardswish": ("1.6", hardswish),
    "torch.nn.functional.hardsigmoid": ("1.6", hardsigmoid),
    "torch.nn.functional.mish": ("1.9", mish),
    "torch.nn.functional.rms_norm": ("2.4", rms_norm),
}
# Keywords newer than their function: (function, keyword) -> (first torch, the equivalent where the keyword is set).
NEWER_KEYWORDS = {
    ("torch.nn.functional.gelu", "approximate"): ("1.12", gelu),
    ("torch.nn.functional.interpolate", "antialias"): ("1.11", None),
    ("torch.nn.functional.scaled_dot_product_attention", "scale"): ("2.1", attention),
    ("torch.nn.functional.scaled_dot_product_attention", "enable_gqa"): ("2.5", attention),
}
# torch.nn layers (or constructor keywords) newer than 1.4: traced through where the target lacks them, not rebuilt.
NEWER_LAYERS = {"SiLU": "1.7", "Hardswish": "1.6", "Hardsigmoid": "1.6", "Mish": "1.9", "RMSNorm": "2.4",
                "Unflatten": "1.7", "GELU.approximate": "1.12", "LayerNorm.bias": "2.1", "GroupNorm.bias": "2.1",
                "MultiheadAttention.batch_first": "1.9", "Conv2d.padding=same": "1.9"}
# The torch names of the functions above, as this torch's objects (those it has).
_BY_OBJECT = {getattr(F, name.rsplit(".", 1)[1]): name for name in {*NEWER_FUNCTIONS, *(f for f, _ in NEWER_KEYWORDS)}
              if hasattr(F, name.rsplit(".", 1)[1])}


def older_equivalent(target, kwargs: dict, torch_version: tuple[int, int]):
    """Return what to call instead of ``target`` with ``kwargs`` where ``torch_version`` lacks it, or None."""
    name = _BY_OBJECT.get(target)
    if name is None:
        return None
    since, equivalent = NEWER_FUNCTIONS.get(name, (None, None))
    if since is not None and torch_version < version_tuple(since):
        return equivalent
    for (function, keyword), (since, equivalent) in NEWER_KEYWORDS.items():
        if function == name and kwargs.get(keyword) not in (None, False, "none") and \
                torch_version < version_tuple(since):
            return equivalent
    return None


def layer_is_newer(layer: nn.Module, torch_version: tuple[int, int]) -> bool:
    """Whether ``torch_version`` lacks the torch.nn class of ``layer`` or a constructor keyword it sets."""
    cls = type(layer).__name__
    marks = [cls]
    if getattr(layer, "approximate", "none") != "none":
        marks.append(f"{cls}.approximate")
    if isinstance(layer, (nn.LayerNorm, nn.GroupNorm)) and getattr(layer, "bias", True) is None \
            and getattr(layer, "weight", None) is not None:
        marks.append(f"{cls}.bias")
    if getattr(layer, "batch_first", False):
        marks.append(f"{cls}.batch_first")
    if isinstance(getattr(layer, "padding", None), str):
        marks.append(f"{cls}.padding={layer.padding}")
    return any(torch_version < version_tuple(NEWER_LAYERS[m]) for m in marks if m in NEWER_LAYERS)


# --- the check of exported code ------------------------------------------------------------------------------
@functools.cache
def known_api() -> dict:
    """Return the names of the newest torch that ``export_api/`` describes (1.13): namespaces, keywords, layers."""
    files = sorted(API.glob("torch-*.json"), key=lambda p: version_tuple(p.stem.split("-", 1)[1]))
    return json.loads(files[-1].read_text())


def check_source(source: str, layers: dict[str, nn.Module], torch_version: tuple[int, int]) -> None:
    """Refuse exported ``source`` that calls a torch function, method or keyword ``torch_version`` lacks.

    The checks are the newer functions, keywords and layers above and, for a target no newer than torch 1.13, every
    name or layer missing from torch 1.13's list.

    Args:
        source: the exported model's Python source.
        layers: the model's torch.nn layers by their path.
        torch_version: the target torch's ``(major, minor)``.

    Raises:
        DlcvError: naming the first such name or layer, and the first torch that has it where known.
    """
    api = known_api()
    described = version_tuple(api["torch"])
    target = ".".join(map(str, torch_version))
    for name, keywords in _calls(source):
        since = NEWER_FUNCTIONS.get(name, (None,))[0] or next(
            (s for (f, k), (s, _) in NEWER_KEYWORDS.items() if f == name and k in keywords), None)
        if since is not None and torch_version < version_tuple(since):
            raise DlcvError(f"the model calls {name} (torch {since} and later), which torch {target} lacks")
        if torch_version <= described and not _described(name, keywords, api):
            raise DlcvError(f"the model calls {name}{_keywords(name, keywords, api)}, which torch {api['torch']} "
                            f"lacks (a later torch has it), so torch {target} does too")
    for path, layer in layers.items():
        if layer_is_newer(layer, torch_version):  # traced through where the target lacks it: never rebuilt
            raise DlcvError(f"the model's layer {path} ({type(layer).__name__}) needs a torch newer than {target}")
        if torch_version <= described and type(layer).__name__ not in api["modules"]:
            raise DlcvError(f"the model's layer {path} is a torch.nn.{type(layer).__name__}, which torch "
                            f"{api['torch']} lacks, so torch {target} does too")


def _calls(source: str) -> list[tuple[str, set[str]]]:
    """List ``(dotted name, keywords)`` of every torch call in ``source``, and of each attribute read (no keywords).

    A call or attribute on a value is named ``torch.Tensor.NAME``.
    """
    tree = ast.parse(source)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target, keywords = node.func, {k.arg for k in node.keywords if k.arg}
        elif isinstance(node, ast.Attribute) and id(node) not in inner and isinstance(node.ctx, ast.Load):
            target, keywords = node, set()
        else:
            continue
        dotted = ast.unparse(target)
        if dotted.startswith("torch."):
            found.append((dotted, keywords))
        elif isinstance(target.value, ast.Name) and target.value.id not in ("self", "math", "operator", "builtins"):
            found.append((f"torch.Tensor.{target.attr}", keywords))
    return found


def _described(name: str, keywords: set[str], api: dict) -> bool:
    """Whether torch 1.13 (``api``) has ``name`` and, where it lists the name's keywords, each of ``keywords``.

    A name in a namespace the file does not describe is not known to be there.
    """
    namespace, _, attr = name.rpartition(".")
    if attr not in api["namespaces"].get(namespace, ()):
        return False
    params = api["keywords"].get(name)
    return params is None or set(keywords) <= set(params)


def _keywords(name: str, keywords: set[str], api: dict) -> str:
    params = api["keywords"].get(name)
    extra = sorted(set(keywords) - set(params)) if params is not None else []
    return f" with {', '.join(extra)}=" if extra else ""
