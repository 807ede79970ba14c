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
    """Return ``torch.tensor(values)`` on ``device`` in ``dtype``, made once per device and dtype; never write to it.

    Cached because made per batch it would be a host-to-device copy every time.
    """
    return torch.tensor(values, dtype=dtype, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map indices in [-size+1, 2*size-2] into [0, size) as reflect padding does."""
    index = index.abs()
    return torch.where(index >= size, 2 * (size - 1) - index, index)


def crop_flip(images: torch.Tensor, padding: int, flip: bool,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly crop and mirror each image of a batch, as one gather of its pixels.

    Args:
        images: (N, H, W, C) images, uint8 in training.
        padding: the image is reflect-padded by this many pixels and cropped back to H x W at a random shift;
            0: no crop.
        flip: mirror each image left-right with probability 0.5.
        generator: the random generator; None: torch's global one.

    Returns:
        the (N, H, W, C) batch, of the same dtype.
    """
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
    """Zero a random ``size`` x ``size`` square of each image, as Cutout does (DeVries & Taylor, 2017).

    The square's centre is uniform over the image, so the square may reach past the border; zero is the data mean.

    Args:
        x: (N, C, H, W) normalised float images.
        size: side of the square in pixels; 0 or less returns ``x`` unchanged.
        generator: the random generator; None: torch's global one.

    Returns:
        a new (N, C, H, W) tensor (``x`` itself when ``size`` <= 0).
    """
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
    """Return per-channel float32 ``(scale, shift)`` such that ``x * scale + shift == (x / 255 - mean) / std``.

    Args:
        mean: per-channel mean of pixel values in [0, 1].
        std: per-channel standard deviation of pixel values in [0, 1].
        device: where the tensors live.

    Returns:
        two (C,) float32 tensors, cached (``device_constant``): never write to them.
    """
    device = torch.device(device)
    scale = device_constant(tuple(1.0 / (255.0 * s) for s in std), device, torch.float32)
    shift = device_constant(tuple(-m / s for m, s in zip(mean, std)), device, torch.float32)
    return scale, shift


def to_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Convert uint8 (N, H, W, 3) images to normalised float32 (N, 3, H, W) in channels-last memory.

    Each row of ``W * 3`` values is normalised against one repeated (scale, shift) row: broadcasting a 3-vector
    innermost is slow on a CPU.

    Args:
        images: (N, H, W, 3) uint8 images.
        mean: per-channel mean of pixel values in [0, 1].
        std: per-channel standard deviation of pixel values in [0, 1].

    Returns:
        (N, 3, H, W) float32, a permuted view of NHWC memory.
    """
    x = images.contiguous().float()
    w = x.shape[2]
    scale, shift = (v.repeat(w) for v in scale_shift(mean, std, x.device))
    rows = x.view(-1, w * x.shape[3])
    rows.mul_(scale).add_(shift)
    return x.permute(0, 3, 1, 2)  # NHWC memory is NCHW channels-last already


def planes_to_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Convert planar uint8 (N, C, H, W) images to normalised float32 (N, C, H, W), as ``to_float`` does."""
    x = images.float()
    scale, shift = (v.view(1, -1, 1, 1) for v in scale_shift(mean, std, x.device))
    return x.mul_(scale).add_(shift)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize (N, C, H, W) images bilinearly to ``size`` x ``size``; None or the same size returns ``x`` as is."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def uses_policy(cfg, planned_epochs: float | None) -> bool:
    """Whether training applies ``data.auto_augment`` under the run's current plan.

    Args:
        cfg: the recipe's ``data`` section.
        planned_epochs: the epochs the run plans; None (no plan yet) counts as enough.

    Returns:
        True when a policy is set and ``planned_epochs`` is None or at least ``data.auto_augment_min_epochs``.
    """
    return cfg.auto_augment != "none" and (planned_epochs is None or planned_epochs >= cfg.auto_augment_min_epochs)


def model_input(images: torch.Tensor, mean, std, size: int | None = None) -> torch.Tensor:
    """Convert uint8 (N, H, W, 3) images to normalised float32 (N, 3, size, size), unaugmented (None: H x W)."""
    return resize(to_float(images, mean, std), size)


def resize_float(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a (B, C, H, W) batch to ``size`` x ``size``, bilinear and anti-aliased (float, or uint8 on a CPU)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def segment_input(images: torch.Tensor, cfg) -> torch.Tensor:
    """Convert whole uint8 tiles to the model's normalised float input at ``data.eval_size``.

    The anti-aliased resize runs on uint8 on a CPU, like the training crops, and on float elsewhere: CUDA has no
    anti-aliased resize of uint8.

    Args:
        images: (B, H, W, 3) uint8 tiles.
        cfg: the recipe's ``data`` section (``eval_size``, ``mean``, ``std``).

    Returns:
        (B, 3, S, S) float32 with S = ``data.eval_size``.
    """
    size = cfg.eval_size
    if size and tuple(images.shape[1:3]) != (size, size):
        if images.device.type != "cpu":
            return resize_float(to_float(images, cfg.mean, cfg.std), size)
        images = resize_float(images.permute(0, 3, 1, 2), size).permute(0, 2, 3, 1)
    return to_float(images, cfg.mean, cfg.std)


def prepare_batch(images: torch.Tensor, cfg, train: bool = False, planned_epochs: float | None = None) -> torch.Tensor:
    """Turn a uint8 batch into the model's input, augmented as the recipe's ``data`` section says when training.

    Training runs crop and flip, the ``auto_augment`` policy (when ``uses_policy``), normalisation, cutout and the
    resize; evaluation only normalisation and the resize.

    Args:
        images: (N, H, W, 3) uint8 images.
        cfg: the recipe's ``data`` section.
        train: augment the batch.
        planned_epochs: the epochs the run plans, for ``uses_policy``; None: no plan yet.

    Returns:
        (N, 3, S, S) normalised float32, S = ``data.input_size`` (else the images' own side).
    """
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
