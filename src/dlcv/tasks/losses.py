"""Pixel losses by name: cross-entropy (class weights, smoothing), focal, Dice and Lovasz (smp's), and sums."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch import losses
from torch import nn

from dlcv.errors import DlcvError


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al., 2017) ``-alpha_t (1 - p_t)^gamma log p_t``, the mean over pixels.

    Written here because smp's ``FocalLoss`` is a one-vs-rest sigmoid loss that takes no class weights.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None):
        """Set the focusing exponent and the class weights.

        Args:
            gamma: the focusing exponent; 0 gives (weighted) cross-entropy.
            alpha: one weight per class, or None (or empty) for none.
        """
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32) if alpha else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the mean loss of (N, C, H, W) logits against (N, H, W) int64 class indices, in float32."""
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target[:, None])[:, 0]
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


class SumOfLosses(nn.Module):
    """A weighted sum of pixel losses (``ce+dice``, ``ce+lovasz``): each part by name, times its weight."""

    def __init__(self, parts: dict[str, nn.Module], weights: dict[str, float]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.weights = weights

    def forward(self, logits, target):
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.parts.items())


# Loss name -> builder of (recipe's loss section, class weights or None); a recipe may sum several.
PIXEL_LOSSES = {
    "ce": lambda cfg, weights: nn.CrossEntropyLoss(
        weight=torch.tensor(weights, dtype=torch.float32) if weights else None, label_smoothing=cfg.label_smoothing),
    "focal": lambda cfg, weights: FocalLoss(cfg.focal_gamma, weights),
    "dice": lambda cfg, weights: _smp_loss("DiceLoss"),  # soft Dice over the classes present
    "lovasz": lambda cfg, weights: _smp_loss("LovaszLoss"),  # Lovasz-softmax (Berman et al.), an IoU surrogate
}


def _smp_loss(name: str) -> nn.Module:
    """segmentation_models_pytorch's multiclass loss ``name``, in float32 (under autocast the logits may be bf16)."""
    class Float32(getattr(losses, name)):
        def forward(self, logits, target):
            return super().forward(logits.float(), target)

    return Float32("multiclass")


def build_pixel_loss(cfg, num_classes: int) -> nn.Module:
    """Build the pixel loss of a recipe's ``loss`` section: one loss, or a weighted sum.

    Args:
        cfg: the ``loss`` section (``dlcv.recipes.SegmentLoss``); its ``name`` may join several losses with ``+``
            (``ce+dice``).
        num_classes: the masks' classes, which ``class_weights`` must match.

    Returns:
        A module mapping (N, C, H, W) logits and (N, H, W) class indices to a scalar loss.

    Raises:
        DlcvError: if ``class_weights`` does not hold one number per class.
    """
    names = [n.strip().lower() for n in cfg.name.split("+")]
    weights = cfg.class_weights
    if weights is not None and len(weights) != num_classes:
        raise DlcvError(f"loss.class_weights has {len(weights)} numbers for {num_classes} classes")
    parts = {name: PIXEL_LOSSES[name](cfg, weights) for name in names}
    if len(parts) == 1:
        return next(iter(parts.values()))
    return SumOfLosses(parts, {name: cfg.weight(name) for name in parts})
