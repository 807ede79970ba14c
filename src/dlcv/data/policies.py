"""Augmentation policies and label mixing for classification batches.

``auto_augment`` applies TrivialAugmentWide (Müller and Hutter, 2021) or RandAugment (Cubuk et al., 2020) with a fresh
draw per image, each operation run once over the images that drew it, with torchvision's operation spaces and
``torchvision.transforms.v2.functional``'s arithmetic (a blend may round one level the other way). Batched because
torchvision's transform runs per image and kornia's policies draw one operation per batch (docs/results.md).
``mix`` applies MixUp or CutMix through torchvision's transforms, giving soft targets. Draws use torch's global random
state, which the task re-seeds every epoch, so a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlcv.errors import DlcvError
from dlcv.rules import AUTO_AUGMENTS

BINS = 31  # torchvision's num_magnitude_bins

Magnitudes = Callable[[int, int, int], Optional[torch.Tensor]]  # (bins, height, width) -> a magnitude per bin


def _none(bins: int, height: int, width: int) -> None:
    return None


def _linspace(low: float, high: float) -> Magnitudes:
    return lambda bins, height, width: torch.linspace(low, high, bins)


def _bits(fewest: int) -> Magnitudes:
    """Posterize's bits kept per bin, from 8 down to ``fewest``."""
    return lambda bins, height, width: (8 - (torch.arange(bins) / ((bins - 1) / (8 - fewest)))).round().int()


# Operation -> (its magnitude per bin, whether a sign is drawn), in torchvision's order (the draws depend on it).
TRIVIAL_AUGMENT_WIDE: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (_none, False),
    "ShearX": (_linspace(0.0, 0.99), True),
    "ShearY": (_linspace(0.0, 0.99), True),
    "TranslateX": (_linspace(0.0, 32.0), True),
    "TranslateY": (_linspace(0.0, 32.0), True),
    "Rotate": (_linspace(0.0, 135.0), True),
    "Brightness": (_linspace(0.0, 0.99), True),
    "Color": (_linspace(0.0, 0.99), True),
    "Contrast": (_linspace(0.0, 0.99), True),
    "Sharpness": (_linspace(0.0, 0.99), True),
    "Posterize": (_bits(2), False),
    "Solarize": (_linspace(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}
RAND_AUGMENT: dict[str, tuple[Magnitudes, bool]] = {
    "Identity": (_none, False),
    "ShearX": (_linspace(0.0, 0.3), True),
    "ShearY": (_linspace(0.0, 0.3), True),
    "TranslateX": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * width, bins), True),
    "TranslateY": (lambda bins, height, width: torch.linspace(0.0, 150.0 / 331.0 * height, bins), True),
    "Rotate": (_linspace(0.0, 30.0), True),
    "Brightness": (_linspace(0.0, 0.9), True),
    "Color": (_linspace(0.0, 0.9), True),
    "Contrast": (_linspace(0.0, 0.9), True),
    "Sharpness": (_linspace(0.0, 0.9), True),
    "Posterize": (_bits(4), False),
    "Solarize": (_linspace(1.0, 0.0), False),
    "AutoContrast": (_none, False),
    "Equalize": (_none, False),
}


def space_of(policy: str) -> dict[str, tuple[Magnitudes, bool]]:
    """The operation space of ``policy`` ("trivialaugment" or "randaugment"), as torchvision defines it."""
    return TRIVIAL_AUGMENT_WIDE if policy == "trivialaugment" else RAND_AUGMENT


def draw(batch: int, space: dict, num_ops: int, magnitude: int | None, size: tuple[int, int]) -> list[tuple]:
    """Draw each image's operations as torchvision does: an operation, a bin (or the fixed one), a sign.

    Args:
        batch: number of images.
        space: the policy's operations (``space_of``).
        num_ops: operations applied one after another to each image.
        magnitude: RandAugment's fixed bin; None draws a bin per image (TrivialAugment).
        size: (height, width) of the images, in pixels.

    Returns:
        One ``(operation indices (batch,) int64, magnitudes (batch,) float32)`` pair per round, on the host.
    """
    tables = [(magnitudes(BINS, *size), signed) for magnitudes, signed in space.values()]
    rounds = []
    for _ in range(num_ops):
        ops = torch.randint(len(tables), (batch,))
        bins = torch.randint(BINS, (batch,)) if magnitude is None else torch.full((batch,), magnitude)
        signs = torch.where(torch.rand(batch) <= 0.5, -1.0, 1.0)
        values = torch.zeros(batch)
        for k, (table, signed) in enumerate(tables):
            chosen = ops == k
            if table is not None and chosen.any():
                values[chosen] = table[bins[chosen]].float() * (signs[chosen] if signed else 1.0)
        rounds.append((ops, values))
    return rounds


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``; to a GPU from pinned memory, so the host does not wait for the stream."""
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def inverse_affine(op: str, value: float, height: int, width: int) -> list[float]:
    """The inverse of one operation's affine map, as the 2x3 matrix ``TF.affine`` and ``TF.rotate`` sample with.

    Coordinates are in pixels from the image's centre, as in torchvision's ``affine``.

    Args:
        op: "ShearX", "ShearY", "TranslateX", "TranslateY" or "Rotate".
        value: the operation's magnitude: a shear factor, a shift in pixels (truncated to whole pixels, as
            TrivialAugment does), or an angle in degrees, counter-clockwise.
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``[a, b, c, d, e, f]``: an output pixel at (x, y) samples the input at ``(a x + b y + c, d x + e y + f)``.
    """
    if op.startswith("Translate"):
        shift = float(int(value))
        return [1.0, 0.0, -shift, 0.0, 1.0, 0.0] if op.endswith("X") else [1.0, 0.0, 0.0, 0.0, 1.0, -shift]
    if op == "Rotate":  # TF.rotate turns counter-clockwise; its inverse turns back
        angle = math.radians(-(value % 360))
        return [math.cos(angle), math.sin(angle), 0.0, -math.sin(angle), math.cos(angle), 0.0]
    # TrivialAugment shears by the angle atan(value), about the top-left corner (pixel offsets half the image)
    shear = math.radians(math.degrees(math.atan(value)))
    if op == "ShearX":
        factor = math.tan(shear)
        return [1.0, factor, (width * 0.5 + factor * (height * 0.5)) - width * 0.5, 0.0, 1.0, 0.0]
    factor = math.sin(shear) / math.cos(shear)
    return [1.0, 0.0, 0.0, factor, 1.0, (factor * (width * 0.5) + height * 0.5) - height * 0.5]


def _quarter_turns(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Which rotations ``TF.rotate`` does exactly with ``torch.rot90`` (0 and 180 degrees; 90 and 270 when square)."""
    degrees = values % 360
    exact = (degrees == 0) | (degrees == 180)
    return exact | (degrees % 90 == 0) if height == width else exact


def _affine(images: torch.Tensor, op: str, values: torch.Tensor) -> torch.Tensor:
    """Shear, translate or rotate uint8 (N, C, H, W) images by per-image amounts, sampled nearest as ``TF.affine``."""
    n, _, h, w = images.shape
    exact = _quarter_turns(values, h, w) if op == "Rotate" else None
    if exact is not None and bool(exact.any()):
        out = images.clone()
        for i in torch.nonzero(exact).flatten().tolist():
            out[i] = torch.rot90(images[i], k=int(float(values[i]) % 360) // 90, dims=(-2, -1))
        rest = torch.nonzero(~exact).flatten()
        if len(rest):
            index = to_device(rest, images.device)
            out[index] = _affine(images[index], op, values[rest])
        return out
    matrices = [inverse_affine(op, v, h, w) for v in values.tolist()]
    theta = torch.tensor(matrices, dtype=torch.float32).view(n, 2, 3)
    theta = to_device(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]), images.device)
    base = torch.empty(1, h, w, 3, device=images.device)  # pixel centres from the image's centre, as TF.affine samples
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=images.device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=images.device).unsqueeze(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta).view(n, h, w, 2)
    out = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(images.dtype)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """Blend each image with ``other`` by its own ratio (``ratio * images + (1 - ratio) * other``), as TF.adjust_*."""
    ratio = to_device(ratio, images.device).view(-1, 1, 1, 1)
    return images.float().mul(ratio).add_(other * (1.0 - ratio)).clamp_(0, 255).to(images.dtype)


def _sharpen(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_sharpness`` with a factor per image: the inside blended with a 3x3 blur."""
    c = images.shape[1]
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.full((c, 1, 3, 3), a, device=images.device)
    kernel[:, :, 1, 1] = b
    out = images.float()
    blurred = F.conv2d(out, kernel, groups=c).round_()
    inside = out[..., 1:-1, 1:-1]
    ratio = (1.0 - to_device(factor, images.device)).view(-1, 1, 1, 1)
    inside.add_(blurred.sub_(inside).mul_(ratio))
    return out.clamp_(0, 255).to(images.dtype)


def apply_op(images: torch.Tensor, op: str, values: torch.Tensor) -> torch.Tensor:
    """Operation ``op`` on uint8 (N, C, H, W) images, image i with magnitude ``values[i]``."""
    if op == "Identity":
        return images
    if op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
        return _affine(images, op, values)
    if op == "Brightness":
        return _blend(images, torch.zeros((), device=images.device), 1.0 + values)
    if op == "Color":
        return _blend(images, TF.rgb_to_grayscale(images).float(), 1.0 + values)
    if op == "Contrast":
        return _blend(images, TF.rgb_to_grayscale(images).float().mean(dim=(-3, -2, -1), keepdim=True), 1.0 + values)
    if op == "Sharpness":
        return _sharpen(images, 1.0 + values) if min(images.shape[-2:]) > 2 else images
    if op == "Posterize":
        bits = values.round().to(torch.int64)
        masks = to_device(((((1 << bits) - 1) << (8 - bits)).clamp(max=255)).to(torch.uint8), images.device)
        return images & masks.view(-1, 1, 1, 1)
    if op == "Solarize":
        threshold = to_device(255.0 * values, images.device).view(-1, 1, 1, 1)
        return torch.where(images >= threshold, 255 - images, images)
    if op == "AutoContrast":
        return TF.autocontrast(images)
    return TF.equalize(images)  # Equalize


def auto_augment(images: torch.Tensor, policy: str, num_ops: int = 2, magnitude: int = 9) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the same, each image through its own draw of the policy, batched by operation."""
    if policy == "none":
        return images
    if policy not in AUTO_AUGMENTS:
        raise DlcvError(f"data.auto_augment: {policy!r} is not one of {', '.join(AUTO_AUGMENTS)}")
    rounds, fixed = (1, None) if policy == "trivialaugment" else (num_ops, magnitude)
    space = space_of(policy)
    out = images.permute(0, 3, 1, 2).contiguous()
    for ops, values in draw(len(out), space, rounds, fixed, tuple(out.shape[-2:])):
        for k, name in enumerate(space):
            chosen = torch.nonzero(ops == k).flatten()  # drawn on the host: no device sync
            if len(chosen) and name != "Identity":
                index = to_device(chosen, out.device)
                out[index] = apply_op(out[index], name, values[chosen])
    return out.permute(0, 2, 3, 1).contiguous()


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float, cutmix_alpha: float):
    """(images, soft targets) after MixUp and/or CutMix; unchanged images and one-hot targets if both are 0."""
    choices = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=float(mixup_alpha), num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=float(cutmix_alpha), num_classes=num_classes))
    if not choices:
        return x, torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
    transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return transform(x, y)
