"""BYOL's two augmented views, made for a whole uint8 batch at once on the training device.

The views are lightly's ``BYOLView1Transform`` / ``BYOLView2Transform`` (after Grill et al., 2020; defaults:
``dlcv.recipes.Views``) as batched tensor operations with per-sample random parameters, not per PIL image; the colour
jitter goes in a fixed order (torchvision's is random).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlcv.data.augment import device_constant

_GRAY = (0.299, 0.587, 0.114)
_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))
_FROM_YIQ = tuple(map(tuple, torch.linalg.inv(torch.tensor(_TO_YIQ, dtype=torch.float64)).tolist()))


def _uniform(n: int, low: float, high: float, device, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def resized_crop_flip(x: torch.Tensor, size: int, min_scale: float, hflip: float, generator=None) -> torch.Tensor:
    """Randomly crop and mirror each image and resample it to ``size`` x ``size``, in one ``grid_sample``.

    The crop is drawn as torchvision's ``RandomResizedCrop`` draws it (area share, then aspect ratio log-uniform in
    [3/4, 4/3]), clipped to the image.

    Args:
        x: (N, C, H, W) float images.
        size: the output side in pixels.
        min_scale: the smallest crop area, as a share of the image's.
        hflip: probability of a mirror.
        generator: the random generator; None: torch's global one.

    Returns:
        (N, C, size, size) images, resampled bilinearly.
    """
    n, device = x.shape[0], x.device
    area = _uniform(n, min_scale, 1.0, device, generator)
    ratio = _uniform(n, math.log(3 / 4), math.log(4 / 3), device, generator).exp()
    width = (area * ratio).sqrt().clamp(max=1.0)  # as fractions of the image side
    height = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, device=device, generator=generator) * 2 - 1) * (1 - width)
    cy = (torch.rand(n, device=device, generator=generator) * 2 - 1) * (1 - height)
    mirror = torch.where(torch.rand(n, device=device, generator=generator) < hflip, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = width * mirror, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    return (x[:, 0:1] * _GRAY[0] + x[:, 1:2] * _GRAY[1] + x[:, 2:3] * _GRAY[2])


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Hue shift by ``angle`` (radians, per sample) as a rotation about the grey axis (YIQ)."""
    cos, sin = angle.cos(), angle.sin()
    # Constants made once per device: a matrix inverse on a GPU checks its result on the host every call.
    to_yiq, from_yiq = (device_constant(m, x.device, x.dtype) for m in (_TO_YIQ, _FROM_YIQ))
    rot = torch.zeros(len(x), 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    matrix = from_yiq @ rot @ to_yiq  # (N, 3, 3)
    return torch.einsum("nij,njhw->nihw", matrix, x)


def colour_jitter(x: torch.Tensor, cfg, generator=None) -> torch.Tensor:
    """Jitter brightness, contrast, saturation and hue, then turn images grey, each at random per sample.

    Args:
        x: (N, 3, H, W) float images in [0, 1].
        cfg: the recipe's ``views`` section (``jitter_prob``, ``brightness``, ``contrast``, ``saturation``,
            ``hue``, ``grayscale``).
        generator: the random generator; None: torch's global one.

    Returns:
        (N, 3, H, W) images in [0, 1], jittered with probability ``jitter_prob``, then grey with probability
        ``grayscale``.
    """
    n, device = x.shape[0], x.device
    on = (torch.rand(n, device=device, generator=generator) < cfg.jitter_prob).to(x.dtype)[:, None, None, None]

    def factor(strength: float) -> torch.Tensor:
        return _uniform(n, max(0.0, 1 - strength), 1 + strength, device, generator)[:, None, None, None]

    jittered = x * factor(cfg.brightness)
    mean = _gray(jittered).mean(dim=(2, 3), keepdim=True)
    jittered = (jittered - mean) * factor(cfg.contrast) + mean
    jittered = jittered.clamp(0, 1)
    grey = _gray(jittered)
    jittered = ((jittered - grey) * factor(cfg.saturation) + grey).clamp(0, 1)
    hue = cfg.hue
    if hue > 0:
        jittered = _rotate_hue(jittered, _uniform(n, -hue, hue, device, generator) * 2 * math.pi).clamp(0, 1)
    x = on * jittered + (1 - on) * x
    gray_on = (torch.rand(n, device=device, generator=generator) < cfg.grayscale).to(x.dtype)
    return torch.lerp(x, _gray(x).expand_as(x), gray_on[:, None, None, None])


def gaussian_blur(x: torch.Tensor, prob: float, sigma_range: tuple[float, float], generator=None) -> torch.Tensor:
    """Blur each image, with probability ``prob``, by a Gaussian of random sigma.

    One grouped convolution with a kernel per sample; an unblurred sample gets sigma 0, the identity kernel.

    Args:
        x: (N, C, H, W) float images.
        prob: probability of a blur per sample; 0 or less returns ``x``.
        sigma_range: ``(low, high)`` of the uniformly drawn sigma, in pixels.
        generator: the random generator; None: torch's global one.

    Returns:
        (N, C, H, W) images, reflect-padded at the border.
    """
    if prob <= 0:
        return x
    n, c, h, w = x.shape
    device = x.device
    sigma = _uniform(n, sigma_range[0], sigma_range[1], device, generator)
    sigma = torch.where(torch.rand(n, device=device, generator=generator) < prob, sigma, torch.zeros_like(sigma))
    radius = max(1, math.ceil(2 * sigma_range[1]))
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp(min=1e-3)[:, None]) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # (N, K); sigma ~0 -> a delta
    weights = kernel.repeat_interleave(c, 0)  # one kernel per (sample, channel)
    flat = x.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, weights[:, None, None, :], groups=n * c)
    flat = F.conv2d(flat, weights[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def solarize(x: torch.Tensor, prob: float, generator=None) -> torch.Tensor:
    """Invert the values at or above 0.5 of each [0, 1] image, with probability ``prob`` per image."""
    if prob <= 0:
        return x
    on = torch.rand(x.shape[0], device=x.device, generator=generator) < prob
    return torch.where(on[:, None, None, None] & (x >= 0.5), 1 - x, x)


def byol_view(images: torch.Tensor, cfg, view: int, mean, std, generator=None) -> torch.Tensor:
    """Make one of BYOL's two views of a uint8 batch.

    Args:
        images: (N, H, W, 3) uint8 images.
        cfg: the recipe's ``views`` section; its blur sigmas are for 224 pixels and scale with ``views.size``.
        view: 0 or 1, the view whose blur and solarisation probabilities apply.
        mean: per-channel mean of pixel values in [0, 1].
        std: per-channel standard deviation of pixel values in [0, 1].
        generator: the random generator; None: torch's global one.

    Returns:
        (N, 3, S, S) normalised float32 in channels-last memory, S = ``views.size``.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255)
    x = resized_crop_flip(x, cfg.size, cfg.min_scale, cfg.hflip, generator)
    x = colour_jitter(x, cfg, generator)
    scale = cfg.size / 224
    x = gaussian_blur(x, cfg.blur[view], (cfg.sigma[0] * scale, cfg.sigma[1] * scale), generator)
    x = solarize(x, cfg.solarize[view], generator)
    mean, std = (device_constant(tuple(v), x.device, x.dtype)[None, :, None, None] for v in (mean, std))
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def byol_views(images: torch.Tensor, cfg, mean, std, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the two differently augmented views (``byol_view`` 0 and 1) of the images, which BYOL compares."""
    return (byol_view(images, cfg, 0, mean, std, generator), byol_view(images, cfg, 1, mean, std, generator))
