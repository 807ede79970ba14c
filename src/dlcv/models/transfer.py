"""ResNet backbones for self-supervised pre-training and transfer, as plain torchvision modules.

A backbone file (the course's ``pretrain_model_SL.pt``, or ``export_backbone``'s) is a plain torchvision ``resnet50``
state_dict, ``fc`` included, loaded strictly: another architecture is refused. No ImageNet weights (the course forbids).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from dlcv.errors import DlcvError
from dlcv.io import save_torch
from dlcv.models.freezing import KeepsFrozenStatistics
from dlcv.models.registry import register_model
from dlcv.models.small import Classifier
from dlcv.models.weights import load_state_file
from dlcv.rules import RESNETS, Width, ZeroToBelowOne


class CentreTapConv2d(nn.Conv2d):
    """A ``Conv2d`` that on a 1x1 input under "same" zero padding uses its kernel's centre tap alone (same result).

    There oneDNN's 3x3 backward is slow on a CPU and, in bf16, fills padding-only taps with garbage. Parameters and
    state_dict are torchvision's; any other input takes ``Conv2d``'s own path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        if (x.shape[-2:] == (1, 1) and kh % 2 and kw % 2 and self.padding == (kh // 2, kw // 2)
                and self.dilation == (1, 1) and self.padding_mode == "zeros"):
            centre = self.weight[:, :, kh // 2 : kh // 2 + 1, kw // 2 : kw // 2 + 1]
            return nn.functional.conv2d(x, centre, self.bias, groups=self.groups)
        return super().forward(x)


def _resnet(arch: str) -> nn.Module:
    """A random ``torchvision.models.<arch>()``, ``fc`` included, convolutions ``CentreTapConv2d``; RESNETS only."""
    from torchvision import models

    net = models.get_model(arch, weights=None)
    for module in net.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = CentreTapConv2d
    return net


def resnet_trunk(arch: str) -> tuple[nn.Module, int]:
    """Build a random torchvision ResNet ``arch`` without its classifier.

    Returns:
        ``(trunk, width)``: the ResNet with ``fc`` an ``Identity``, and the width of its (N, width) features.
    """
    net = _resnet(arch)
    width = net.fc.in_features
    net.fc = nn.Identity()
    return net, width


def load_backbone(path: str | os.PathLike, arch: str) -> nn.Module:
    """Load a backbone file's trunk as the course does (``<arch>()``, strict ``load_state_dict``), less ``fc``.

    Args:
        path: a torchvision ResNet state_dict file, ``fc`` included.
        arch: the ResNet it must be (one of ``RESNETS``).

    Returns:
        The trunk, its ``fc`` an ``Identity``.

    Raises:
        DlcvError: if the file cannot be read or does not load strictly into ``arch``.
    """
    state = load_state_file(path)
    net = _resnet(arch)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:240]
        raise DlcvError(f"{path}: not a torchvision {arch} state_dict (strict load failed: {detail})") from None
    net.fc = nn.Identity()
    return net


def export_backbone(trunk: nn.Module, arch: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Save ``trunk`` atomically as a torchvision ``arch`` state_dict that loads strictly into ``<arch>()``.

    Args:
        trunk: the ResNet trunk, its ``fc`` an ``Identity``.
        arch: its torchvision architecture.
        path: the file to write.
        seed: seeds the file's ``fc`` (1000 outputs): torchvision's initialisation, never trained.

    Returns:
        ``path``.
    """

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        full = _resnet(arch)
    # Loading copies (into float32 CPU tensors) and proves the file loads the course's way before it is written.
    full.load_state_dict({**trunk.state_dict(), **{f"fc.{k}": v for k, v in full.fc.state_dict().items()}}, strict=True)
    save_torch(full.state_dict(), path)
    return Path(path)


def mlp_head(width: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Report R1's classifier head: four linear layers, ``hidden`` wide, LeakyReLU and dropout between, He init."""
    blocks: list[nn.Module] = []
    for c_in in (width, hidden, hidden):
        blocks += [nn.Linear(c_in, hidden), nn.LeakyReLU(0.01), nn.Dropout(dropout)]
    blocks.append(nn.Linear(hidden, num_classes))
    for module in blocks:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_normal_(module.weight, a=0.01, nonlinearity="leaky_relu")
            nn.init.zeros_(module.bias)
    return nn.Sequential(*blocks)


@register_model("resnet_transfer")
class TransferResNet(KeepsFrozenStatistics, Classifier):
    """A torchvision ResNet (arch) from a backbone file or random, frozen or not, with a linear or MLP head."""

    def __init__(self, num_classes: int, arch: Literal[RESNETS] = "resnet50", backbone_weights: str | None = None,
                 freeze: bool = False, head: Literal["linear", "mlp"] = "linear", head_hidden: Width = 1000,
                 head_dropout: ZeroToBelowOne = 0.5):
        """Build the trunk and the head.

        Args:
            num_classes: the head's outputs.
            arch: a torchvision ResNet (one of ``RESNETS``).
            backbone_weights: a backbone file (``load_backbone``); None: a random trunk.
            freeze: keep the trunk a fixed feature extractor (no gradients; batch norm in evaluation mode).
            head: ``linear``, or ``mlp`` (``mlp_head``, report R1's).
            head_hidden: the MLP head's width.
            head_dropout: the MLP head's dropout.

        Raises:
            DlcvError: if the backbone file cannot be read or does not fit ``arch``.
        """
        super().__init__()
        self.arch = arch
        self.backbone = load_backbone(backbone_weights, arch) if backbone_weights else resnet_trunk(arch)[0]
        self.feature_dim = self.backbone.inplanes  # torchvision's ResNet: layer4's width, what its fc read
        self.head = (nn.Linear(self.feature_dim, num_classes) if head == "linear"
                     else mlp_head(self.feature_dim, num_classes, head_hidden, float(head_dropout)))
        self.frozen = [self.backbone] if freeze else []  # batch-norm statistics stay those of pre-training
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):  # a frozen trunk: no graph
            return self.backbone(x)


def transfer_arch(model) -> str:
    """Return the ResNet of a recipe's ``resnet_transfer`` model section (``model.args.arch``, else the default)."""
    return model.args.get("arch", inspect.signature(TransferResNet).parameters["arch"].default)
