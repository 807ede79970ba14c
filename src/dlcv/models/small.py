"""Classifiers for small (32x32) images, trained from scratch: the reports' and our own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dlcv.errors import DlcvError
from dlcv.models.registry import register_model
from dlcv.rules import MAX_WIDTH, AcceptedValues, PositiveFloat, Width, ZeroToBelowOne, ZeroToOne, integer

WIDTHS = Annotated[Sequence[Width], Field(min_length=1),
                   AcceptedValues(f"a non-empty list of whole numbers in 1..{MAX_WIDTH}")]
VGG_WIDTHS = Annotated[Sequence[Literal["M"] | Width], Field(min_length=1),
                       AcceptedValues(f"a non-empty list of whole numbers in 1..{MAX_WIDTH} and M (a max-pool)")]
# Stages double the width from ``width``; blocks per stage as deep as ResNet-152's deepest (36) and then some.
BLOCKS = Annotated[Sequence[integer(0, 64)], Field(min_length=1, max_length=6),
                   AcceptedValues("a list of 1 to 6 whole numbers in 0..64")]


class Classifier(nn.Module):
    """Base classifier: a feature extractor (``forward_features``) followed by ``head``."""

    feature_dim: int
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the (N, feature_dim) outputs of the second-last layer for (N, 3, H, W) images."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def conv_bn_act(c_in: int, c_out: int) -> nn.Sequential:
    """A 3x3 convolution without bias, batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


@register_model("cnn3")
class CNN3(Classifier):
    """Report R2's model A: three blocks of two 3x3 convolutions and a max-pool, then a 2-layer MLP."""

    def __init__(self, num_classes: int, widths: WIDTHS = (64, 128, 256), hidden: Width = 512,
                 dropout: ZeroToBelowOne = 0.5):
        """Build the network for 32x32 images, which three blocks pool to 4x4.

        Args:
            num_classes: the head's outputs.
            widths: each block's channels.
            hidden: the MLP's hidden width, the features' size.
            dropout: dropout before the head.
        """
        super().__init__()
        layers, c_in = [], 3
        for c in widths:
            layers += [conv_bn_act(c_in, c), conv_bn_act(c, c), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(c_in * 4 * 4, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.feature_dim = hidden
        self.head = nn.Linear(hidden, num_classes)

    def forward_features(self, x):
        return self.mlp(self.features(x))


VGG13_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@register_model("vgg13_bn")
class VGG(Classifier):
    """Report R3's model A: VGG13 with batch norm at the report's widths; five pools take 32x32 to 1x1."""

    def __init__(self, num_classes: int, widths: VGG_WIDTHS = VGG13_WIDTHS, dropout: ZeroToBelowOne = 0.0):
        """Build the network, its features average-pooled to one vector per image.

        Args:
            num_classes: the head's outputs.
            widths: each 3x3 convolution's channels in order, ``"M"`` for a 2x2 max-pool.
            dropout: dropout before the head.
        """
        super().__init__()
        layers, c_in = [], 3
        for w in widths:
            if w == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(conv_bn_act(c_in, w))
                c_in = w
        self.features = nn.Sequential(*layers)
        self.feature_dim = c_in
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x):
        return self.dropout(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


@register_model("alexnet")
class AlexNet(Classifier):
    """Report R1's model A: torchvision's AlexNet (1000 outputs) and one linear layer; wants 224x224 input."""

    def __init__(self, num_classes: int, dropout: ZeroToBelowOne = 0.5):
        """Build a random AlexNet and the head on its 1000 outputs.

        Args:
            num_classes: the head's outputs.
            dropout: AlexNet's own classifier dropout.
        """
        super().__init__()
        from torchvision.models import alexnet as tv_alexnet

        self.body = tv_alexnet(weights=None, num_classes=1000, dropout=dropout)
        self.feature_dim = 1000
        self.head = nn.Linear(1000, num_classes)

    def forward_features(self, x):
        return self.body(x)


# --- ResNet for 32x32 (3x3 stem, no stem pooling) ------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet's basic block (He et al., 2016): two 3x3 convolutions with batch norm, and a shortcut.

    The shortcut is a 1x1 convolution with batch norm where the shape changes, else the identity.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@register_model("resnet_small")
class SmallResNet(Classifier):
    """A ResNet for 32x32 images (ResNet-18 layout by default; ``width`` and ``blocks`` scale it)."""

    def __init__(self, num_classes: int, width: Width = 64, blocks: BLOCKS = (2, 2, 2, 2)):
        """Build the network: a 3x3 stem without pooling, then stages that halve the resolution after the first.

        Args:
            num_classes: the head's outputs.
            width: the stem's and first stage's channels, doubling at each stage.
            blocks: basic blocks per stage.
        """
        super().__init__()
        self.stem = conv_bn_act(3, width)
        stages, c_in = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(c_in, c_out, 2 if (j == 0 and i > 0) else 1))
                c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.feature_dim = c_in
        self.head = nn.Linear(c_in, num_classes)

    def forward_features(self, x):
        return F.adaptive_avg_pool2d(self.stages(self.stem(x)), 1).flatten(1)


# --- dlcv_net: our from-scratch design for 32x32 on a CPU ----------------------------------------
PATCH = 3 * 2 * 2  # the values of one 2x2 RGB patch, which the stem sees: its whitening has 2 * PATCH channels


def stem_input(x: torch.Tensor) -> torch.Tensor:
    """Pad 32 -> 33 so that the 2x2 stem gives 32x32 and the pools stay exact."""
    return F.pad(x, (0, 1, 0, 1), mode="replicate")


class ConvGroup(nn.Module):
    """conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU: the resolution halves once per group."""

    def __init__(self, c_in: int, c_out: int, bn_momentum: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(c_out, momentum=bn_momentum)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=bn_momentum)

    def forward(self, x):
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


@register_model("dlcv_net")
class DlcvNet(Classifier):
    """dlcv's own from-scratch design for 32x32 images on a CPU budget.

    A wide, shallow VGG-style network after airbench (Keller Jordan, 2024): a 2x2 stem, conv groups each pooling
    right after its first convolution (most work at a quarter of the resolution, hence fast on a CPU), global max-pool
    and a bias-free head with a fixed logit scale.
    """

    def __init__(self, num_classes: int, widths: WIDTHS = (64, 256, 256), stem_width: Width = 24,
                 bn_momentum: ZeroToOne = 0.4, logit_scale: PositiveFloat = 1.0, whiten: bool = False):
        """Build the network.

        Args:
            num_classes: the head's outputs.
            widths: each conv group's channels.
            stem_width: the 2x2 stem's channels; with ``whiten`` it must be 24 (``2 * PATCH``).
            bn_momentum: batch norm's momentum (torch's convention: the new batch's share).
            logit_scale: the fixed factor on the logits.
            whiten: make the stem airbench's frozen patch-whitening layer, set from the training images before fit
                (``init_from_images``).

        Raises:
            DlcvError: if ``whiten`` is set with a ``stem_width`` other than 24.
        """
        super().__init__()
        if whiten and stem_width != 2 * PATCH:
            raise DlcvError(f"model.args.whiten: the whitening stem has {2 * PATCH} channels (2x2x3 patches, each "
                            f"eigenvector and its negative), not stem_width {stem_width}")
        self.stem = nn.Sequential(nn.Conv2d(3, stem_width, 2, padding=0, bias=True), nn.GELU())
        self.whiten = whiten
        if whiten:  # its weights come from the data and stay; its bias trains
            self.stem[0].weight.requires_grad_(False)
        pairs = zip((stem_width, *widths), widths)
        self.groups = nn.Sequential(*(ConvGroup(c_in, w, bn_momentum) for c_in, w in pairs))
        self.feature_dim = widths[-1]
        self.head = nn.Linear(widths[-1], num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward_features(self, x):
        x = self.stem(stem_input(x))
        return F.adaptive_max_pool2d(self.groups(x), 1).flatten(1)

    def forward(self, x):
        return self.head(self.forward_features(x)) * self.logit_scale

    @torch.no_grad()
    def init_from_images(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening stem from training images, as airbench does; nothing without ``whiten``.

        The filters are each eigenvector of the images' 2x2 patches' second-moment matrix, scaled by
        1/sqrt(eigenvalue + eps), and its negative.

        Args:
            x: (N, 3, H, W) normalised float training images.
            eps: added to each eigenvalue.
        """
        if not self.whiten:
            return
        conv, moment, count = self.stem[0], torch.zeros(PATCH, PATCH, dtype=torch.float64), 0
        for chunk in x.split(500):  # 500 images: 49 MB of float64 patches
            chunk = stem_input(chunk.cpu().double())  # (no float64 on MPS)
            patches = chunk.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, PATCH)
            moment, count = moment + patches.T @ patches, count + len(patches)
        values, vectors = torch.linalg.eigh(moment / count)
        filters = (vectors.T / (values[:, None] + eps).sqrt()).flip(0).reshape(PATCH, 3, 2, 2)
        conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))
