"""Augmentation policies and label mixing for classification batches (torchvision's own transforms).

``auto_augment`` applies TrivialAugmentWide or RandAugment with a fresh draw per image (torchvision's
v2 transforms draw once per call, so each image of the batch is its own call). ``mix`` applies
MixUp or CutMix (chosen at random per batch when both are on, as R3 did) and returns soft targets.
Both use torch's global random state, which the training task re-seeds at every epoch start, so a
resumed run draws exactly what the uninterrupted one drew.
"""

from __future__ import annotations

import torch

from dlcv.errors import DlcvError

AUTO_AUGMENT = ("none", "trivialaugment", "randaugment")


def auto_augment(images: torch.Tensor, policy: str, num_ops: int = 2, magnitude: int = 9) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the same, each image through its own draw of the policy."""
    if policy == "none":
        return images
    from torchvision.transforms import v2

    if policy == "trivialaugment":
        transform = v2.TrivialAugmentWide()
    elif policy == "randaugment":
        transform = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    else:
        raise DlcvError(f"data.auto_augment: {policy!r} is not one of {', '.join(AUTO_AUGMENT)}")
    chw = images.permute(0, 3, 1, 2)
    out = torch.stack([transform(image) for image in chw])
    return out.permute(0, 2, 3, 1).contiguous()


def mix(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float, cutmix_alpha: float):
    """(images, soft targets) after MixUp and/or CutMix; unchanged images and one-hot targets if both are 0."""
    from torchvision.transforms import v2

    choices = []
    if mixup_alpha > 0:
        choices.append(v2.MixUp(alpha=float(mixup_alpha), num_classes=num_classes))
    if cutmix_alpha > 0:
        choices.append(v2.CutMix(alpha=float(cutmix_alpha), num_classes=num_classes))
    if not choices:
        return x, torch.nn.functional.one_hot(y, num_classes).to(x.dtype)
    transform = choices[0] if len(choices) == 1 else v2.RandomChoice(choices)
    return transform(x, y)
