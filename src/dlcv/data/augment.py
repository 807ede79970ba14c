"""Batched image preparation and augmentation, run on the training device.

Images travel as uint8 (N, H, W, 3) batches; here they become normalised float (N, 3, H, W)
tensors in channels-last memory, and training batches get a random crop with padding and a
horizontal flip, one random draw per image but one tensor operation per batch.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) in channels-last memory."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((x - mean_t) / std_t).contiguous(memory_format=torch.channels_last)


def resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) to ``size`` x ``size`` (the model's input); None keeps it."""
    if size is None or tuple(x.shape[-2:]) == (size, size):
        return x
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop every image of (N, C, H, W) at a random offset after reflect-padding by ``padding``."""
    if padding <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing around the channel slice gives (N, H, W, C): channels-last as it stands.
    return padded[batch, :, rows, cols].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of the images of (N, C, H, W) left to right."""
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, crop_padding: int = 4, flip: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The standard small-image training augmentation: padded random crop, then flip."""
    x = random_crop(x, crop_padding, generator)
    if flip:
        x = random_flip(x, generator)
    return x.contiguous(memory_format=torch.channels_last)
