"""Augmentation policies and label mixing for classification batches.

``auto_augment`` applies TrivialAugmentWide or RandAugment with a fresh draw per image, each operation run once over
the images that drew it, as torchvision's transform would (pixels may differ by one where a blend rounds differently).
``mix`` applies MixUp or CutMix (one at random per batch when both are on, as R3 did), giving soft targets. Draws use
torch's global random state, re-seeded by the task every epoch: a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

from dlcv.errors import DlcvError
from dlcv.rules import AUTO_AUGMENTS

BINS = 31  # torchvision's num_magnitude_bins


def space_of(policy: str) -> dict:
    """torchvision's own space of the policy: operation -> (magnitudes of the bins for (bins, height, width),
    or None: no magnitude; whether the sign is drawn)."""
    return (v2.TrivialAugmentWide if policy == "trivialaugment" else v2.RandAugment)._AUGMENTATION_SPACE


def draw(batch: int, space: dict, num_ops: int, magnitude: int | None, size: tuple[int, int]) -> list[tuple]:
    """Per round of operations: (operation index, magnitude) per image, as torchvision draws them:
    an operation uniformly, a bin uniformly (TrivialAugment) or the fixed one (RandAugment), a sign."""
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
    """A host tensor (indices, magnitudes drawn on the host) on ``device``: to a GPU from pinned memory, without
    waiting for the stream (a copy from pageable memory waits for all queued work, stalling the host)."""
    if device.type == "cuda":
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def _affine(images: torch.Tensor, op: str, values: torch.Tensor) -> torch.Tensor:
    """Shear, translation or rotation of uint8 (N, C, H, W) images by per-image amounts: one nearest-
    neighbour resampling, with torchvision's inverse matrices and grid (``affine_image``)."""
    n, _, h, w = images.shape
    if op == "Rotate" and h == w and bool((values % 90 == 0).any()):  # torchvision turns these exactly
        out, quarter = images.clone(), torch.nonzero(values % 90 == 0).flatten()
        for i in quarter.tolist():
            out[i] = torch.rot90(images[i], k=int(float(values[i]) % 360) // 90, dims=(-2, -1))
        rest = torch.nonzero(values % 90 != 0).flatten()
        if len(rest):
            index = to_device(rest, images.device)
            out[index] = _affine(images[index], op, values[rest])
        return out
    sheared = op.startswith("Shear")
    center = [-w * 0.5, -h * 0.5] if sheared else [0.0, 0.0]  # torchvision shears about the top-left corner
    matrices = []
    for v in values.tolist():
        along = [v, 0.0] if op.endswith("X") else [0.0, v]
        shear = [math.degrees(math.atan(a)) for a in along] if sheared else [0.0, 0.0]
        shift = [float(int(a)) for a in along] if op.startswith("Translate") else [0.0, 0.0]
        angle = -(v % 360) if op == "Rotate" else 0.0  # torchvision's rotate turns the other way from its affine
        matrices.append(_get_inverse_affine_matrix(center, angle, shift, 1.0, shear))
    theta = torch.tensor(matrices, dtype=torch.float32).view(n, 2, 3)
    theta = to_device(theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h]), images.device)
    base = torch.empty(1, h, w, 3, device=images.device)
    base[..., 0].copy_(torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=images.device))
    base[..., 1].copy_(torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=images.device).unsqueeze(-1))
    base[..., 2].fill_(1)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(theta).view(n, h, w, 2)
    out = F.grid_sample(images.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.round_().to(images.dtype)


def _blend(images: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """torchvision's ``_blend`` with a ratio per image: ``ratio * images + (1 - ratio) * other``, clamped."""
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
