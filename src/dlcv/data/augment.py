"""Batched image preparation and augmentation, run on the training device.

Images travel as uint8 (N, H, W, 3) batches; training crops and flips are one gather on the uint8 pixels. Then the
batch becomes a normalised float (N, 3, H, W) tensor in channels-last memory (the NHWC layout it already has).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def device_constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``torch.tensor(values)`` cached per device and dtype (per batch it is a host-to-device copy); never write it."""
    return torch.tensor(values, dtype=dtype, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-size+1, 2*size-2] into [0, size) as reflect padding does."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def crop_flip(images: torch.Tensor, padding: int, flip: bool,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (reflect-padded by ``padding``) and random mirror of uint8 (N, H, W, C) images, as one gather."""
    n, h, w, _ = images.shape
    device = images.device
    rows = torch.arange(h, device=device).expand(n, h)
    cols = torch.arange(w, device=device).expand(n, w)
    if padding > 0:
        dy = torch.randint(-padding, padding + 1, (n, 1), device=device, generator=generator)
        dx = torch.randint(-padding, padding + 1, (n, 1), device=device, generator=generator)
        rows, cols = _reflect(rows + dy, h), _reflect(cols + dx, w)
    if flip:
        mirrored = torch.rand(n, 1, device=device, generator=generator) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    # One index_select over the (N*H*W, C) pixel rows: the fastest gather on a CPU.
    pixel = (torch.arange(n, device=device)[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :])
    return images.reshape(n * h * w, -1).index_select(0, pixel.view(-1)).view(images.shape)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a random ``size`` x ``size`` square (maybe over the border) of each image of normalised (N, C, H, W) ``x``;
    zero is the data mean (DeVries & Taylor)."""
    if size <= 0:
        return x
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n, 1, 1), device=x.device, generator=generator) - size // 2
    cx = torch.randint(0, w, (n, 1, 1), device=x.device, generator=generator) - size // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= cy) & (rows < cy + size) & (cols >= cx) & (cols < cx + size)
    return x.masked_fill(hole[:, None], 0.0)


def scale_shift(mean: Sequence[float], std: Sequence[float], device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel float32 ``(scale, shift)`` taking uint8 to ``(x / 255 - mean) / std``; cached, never write them."""
    device = torch.device(device)
    scale = device_constant(tuple(1.0 / (255.0 * s) for s in std), device, torch.float32)
    shift = device_constant(tuple(-m / s for m, s in zip(mean, std)), device, torch.float32)
    return scale, shift


def to_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) in channels-last memory, normalised as rows of ``W * 3``
    values against one repeated (scale, shift) row: broadcasting a 3-vector innermost is slow on a CPU."""
    x = images.contiguous().float()
    w = x.shape[2]
    scale, shift = (v.repeat(w) for v in scale_shift(mean, std, x.device))
    rows = x.view(-1, w * x.shape[3])
    rows.mul_(scale).add_(shift)
    return x.permute(0, 3, 1, 2)  # NHWC memory is NCHW channels-last already


def planes_to_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Planar uint8 (N, C, H, W) -> normalised float (N, C, H, W), the same values as ``to_float``."""
    x = images.float()
    scale, shift = (v.view(1, -1, 1, 1) for v in scale_shift(mean, std, x.device))
    return x.mul_(scale).add_(shift)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` x ``size`` (the model's input); None keeps it."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def uses_policy(cfg, planned_epochs: float | None) -> bool:
    """Whether training uses ``auto_augment``: planned epochs unknown (None) or at least ``auto_augment_min_epochs``."""
    return cfg.auto_augment != "none" and (planned_epochs is None or planned_epochs >= cfg.auto_augment_min_epochs)


def model_input(images: torch.Tensor, mean, std, size: int | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, size, size), without augmentation."""
    return resize(to_float(images, mean, std), size)


def resize_float(x: torch.Tensor, size: int) -> torch.Tensor:
    """Anti-aliased bilinear resize of a (B, C, H, W) batch (float; uint8 on a CPU) to ``size`` x ``size``."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def segment_input(images: torch.Tensor, cfg) -> torch.Tensor:
    """uint8 (B, H, W, 3) whole tiles -> normalised float at the evaluation size (anti-aliased resize): resized as uint8
    on a CPU, like the training crops; elsewhere as float, since CUDA has no anti-aliased resize of uint8."""
    size = cfg.eval_size
    if size and tuple(images.shape[1:3]) != (size, size):
        if images.device.type != "cpu":
            return resize_float(to_float(images, cfg.mean, cfg.std), size)
        images = resize_float(images.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
    return to_float(images, cfg.mean, cfg.std)


def prepare_batch(images: torch.Tensor, cfg, train: bool = False, planned_epochs: float | None = None) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the model's input as ``data`` says, augmented when ``train`` (policy: ``uses_policy``)."""
    if not train:
        return model_input(images, cfg.mean, cfg.std, cfg.input_size)
    images = crop_flip(images, padding=cfg.crop_padding, flip=cfg.flip)
    if uses_policy(cfg, planned_epochs):
        from dlcv.data.policies import auto_augment

        images = auto_augment(images, cfg.auto_augment, cfg.randaugment_ops, cfg.randaugment_magnitude)
    x = to_float(images, cfg.mean, cfg.std)
    if cfg.cutout:
        x = cutout(x, cfg.cutout)
    return resize(x, cfg.input_size)
