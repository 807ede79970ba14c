"""Pixel losses by name: cross-entropy (class weights, label smoothing), focal, Dice, Lovasz, and sums of them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcv.errors import DlcvError


class FocalLoss(nn.Module):
    """Lin et al.'s focal loss: ``-alpha_c (1 - p_t)^gamma log p_t``, mean over pixels.

    ``alpha``: a per-class weight list (or None); one report used it against the rare Rangeland class.
    """

    def __init__(self, gamma: float = 2.0, alpha: list[float] | None = None):
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer("alpha", torch.tensor(alpha, dtype=torch.float32) if alpha else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target[:, None])[:, 0]
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


class DiceLoss(nn.Module):
    """Soft multi-class Dice: ``1 - mean_c 2|P_c G_c| / (|P_c| + |G_c|)`` over the batch's pixels,
    averaged over the classes present in the batch's ground truth or predicted mass."""

    def __init__(self, smooth: float = 1.0):
        super().__init__()
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = F.softmax(logits.float(), dim=1)
        onehot = F.one_hot(target, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        total = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + self.smooth) / (total + self.smooth)
        return 1 - dice.mean()


class SumOfLosses(nn.Module):
    def __init__(self, parts: dict[str, nn.Module], weights: dict[str, float]):
        super().__init__()
        self.parts = nn.ModuleDict(parts)
        self.weights = weights

    def forward(self, logits, target):
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.parts.items())


# Loss name -> builder of (recipe's loss section, class weights or None); a recipe may sum several.
PIXEL_LOSSES = {
    "ce": lambda cfg, weights: nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32) if weights else None,
                                                   label_smoothing=cfg.label_smoothing),
    "focal": lambda cfg, weights: FocalLoss(cfg.focal_gamma, weights),
    "dice": lambda cfg, weights: DiceLoss(),
    "lovasz": lambda cfg, weights: _lovasz(),
}


def _lovasz() -> nn.Module:
    """The Lovasz-softmax loss (Berman et al., 2018): a smooth surrogate of each class's IoU, averaged over
    the classes present (segmentation_models_pytorch's implementation), in float32."""
    from segmentation_models_pytorch.losses import LovaszLoss

    class Lovasz(LovaszLoss):
        def forward(self, logits, target):
            return super().forward(logits.float(), target)

    return Lovasz("multiclass")


def build_pixel_loss(cfg, num_classes: int) -> nn.Module:
    """The pixel loss of a recipe's ``loss`` section (``dlcv.recipes.SegmentLoss``): one, or a weighted sum."""
    names = [n.strip().lower() for n in cfg.name.split("+")]
    weights = cfg.class_weights
    if weights is not None and len(weights) != num_classes:
        raise DlcvError(f"loss.class_weights has {len(weights)} numbers for {num_classes} classes")
    parts = {name: PIXEL_LOSSES[name](cfg, weights) for name in names}
    if len(parts) == 1:
        return next(iter(parts.values()))
    scale = {n: getattr(cfg, f"{n}_weight", 1.0) for n in parts}  # ce and focal weigh 1
    return SumOfLosses(parts, scale)
