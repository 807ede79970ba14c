"""Model B: any timm or torchvision classifier by name, its head replaced for the data set's classes.

``weights``: ``None`` (random), ``imagenet`` (downloads when online), a local state_dict of the same architecture
(classifier or not), or for timm's ``tf_efficientnet_lite0`` (1, 2) the offline ``efficientnet-lite0`` (1, 2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from torch import nn

from dlcv.errors import DlcvError
from dlcv.models.freezing import KeepsFrozenStatistics, freeze_encoder_stages
from dlcv.models.registry import register_model
from dlcv.models.small import Classifier
from dlcv.models.weights import load_state_file, offline_weights, online, timm_source, torchvision_source
from dlcv.rules import AcceptedValues, NonNegativeInt, RuleReason, ZeroToBelowOne


def known_name(name: str, known: bool, library: str) -> str:
    """Return ``name`` if ``library`` knows it (``known``); a pydantic rule of a model argument.

    Raises:
        ValueError: if ``known`` is false; the rule reports it as the argument's error.
    """
    if not known:
        raise ValueError(f"{name!r} is no {library} model")
    return name


def _timm_name(name: str) -> str:
    """Return ``name`` if timm knows it: an architecture, or one with a pretrained tag timm lists (``.in1k``).

    Raises:
        ValueError: if timm knows no such architecture, or no such tag of it; the rule reports it as the error.
    """
    import timm
    from timm.models import split_model_name_tag

    arch, tag = split_model_name_tag(name)
    known_name(arch, timm.is_model(arch), "timm")
    if tag and name not in timm.list_pretrained(name):
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(arch + ".*")]
        raise RuleReason(f"not a pretrained tag of {arch}: timm has no tag {tag!r} (its tags: "
                         f"{', '.join(tags) or 'none'})")
    return name


def _torchvision_name(name: str) -> str:
    from torchvision import models

    return known_name(name, name in models.list_models(), "torchvision")


TimmName = Annotated[str, AfterValidator(_timm_name), AcceptedValues("a timm model name (timm.list_models())")]
TorchvisionName = Annotated[str, AfterValidator(_torchvision_name),
                            AcceptedValues("a torchvision model name (torchvision.models.list_models())")]


def _load_into(model: nn.Module, state: dict, source: str, classifier_prefixes: tuple[str, ...]) -> None:
    """Load ``state`` into ``model``, skipping a classifier of another shape; other mismatches are a DlcvError."""
    own = model.state_dict()
    usable = {}
    for key, value in state.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            if key.startswith(classifier_prefixes):
                continue  # the old head; it is replaced anyway
            raise DlcvError(f"{source}: {key} has shape {tuple(value.shape)} "
                            f"but the model's has {tuple(own[key].shape)}")
        usable[key] = value
    missing = [k for k in own if k not in usable and not k.startswith(classifier_prefixes)
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in usable if k not in own]
    if missing or unexpected:
        detail = (f"missing {', '.join(missing[:3])}" if missing else "") + \
                 (f" unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        raise DlcvError(f"{source}: does not fit the model ({detail.strip()} ...)")
    model.load_state_dict(usable, strict=False)


@register_model("timm")
class TimmClassifier(KeepsFrozenStatistics, Classifier):
    """Any timm classifier (model.args.arch), head replaced; weights: imagenet, a file, or efficientnet-lite0/1/2.

    ``forward_features`` gives its pooled pre-logits.
    """

    def __init__(self, num_classes: int, arch: TimmName = "tf_efficientnet_lite0", weights: str | None = None,
                 drop_rate: ZeroToBelowOne = 0.0, drop_path_rate: ZeroToBelowOne = 0.0,
                 freeze_stages: NonNegativeInt = 0):
        """Build timm's ``arch`` with a new head of ``num_classes`` outputs.

        Args:
            num_classes: the head's outputs.
            arch: a timm model name.
            weights: None (random), ``imagenet`` (downloaded), a local state_dict file, or the offline
                ``efficientnet-lite0`` (``-lite1``, ``-lite2``) for ``tf_efficientnet_lite0`` (1, 2).
            drop_rate: dropout before the head.
            drop_path_rate: stochastic depth, rising to this rate over the blocks.
            freeze_stages: the stem and this many first stages kept as the weights left them
                (``dlcv.models.freezing``).

        Raises:
            DlcvError: if timm cannot build ``arch``, the weights do not fit it or cannot be downloaded, or
                ``freeze_stages`` exceeds its stages.
        """
        super().__init__()
        import timm

        try:
            net = timm.create_model(arch, pretrained=False, drop_rate=drop_rate, drop_path_rate=drop_path_rate)
        except RuntimeError as exc:
            raise DlcvError(f"timm model {arch!r}: {exc}") from None
        offline = offline_weights(weights, arch, net.state_dict())
        if offline is not None:
            net.load_state_dict(offline, strict=False)
        elif weights and weights.lower() == "imagenet":
            net = online(lambda: timm.create_model(arch, pretrained=True, drop_rate=drop_rate,
                                                   drop_path_rate=drop_path_rate), f"ImageNet weights of {arch!r}",
                         source=timm_source(arch))
        elif weights:
            head = net.default_cfg.get("classifier", "classifier")
            _load_into(net, load_state_file(weights), weights, (head + ".",))
        net.reset_classifier(num_classes)
        self.net = net
        self.feature_dim = net.num_features
        self.frozen = freeze_encoder_stages(net, freeze_stages)

    @property
    def head(self) -> nn.Module:
        return self.net.get_classifier()

    def forward_features(self, x):
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x):
        return self.net(x)


@register_model("torchvision")
class TorchvisionClassifier(Classifier):
    """Any torchvision classifier (model.args.arch), last linear layer replaced; weights: imagenet or a file."""

    def __init__(self, num_classes: int, arch: TorchvisionName = "resnet50", weights: str | None = None):
        """Build torchvision's ``arch`` with its last linear layer replaced by a head of ``num_classes`` outputs.

        Args:
            num_classes: the head's outputs.
            arch: a torchvision model name.
            weights: None (random), ``imagenet`` (torchvision's default weights, downloaded), a torchvision weights
                name such as ``IMAGENET1K_V2``, or a local state_dict file.

        Raises:
            DlcvError: if torchvision cannot build ``arch`` or it has no linear layer, or the weights do not fit it
                or cannot be downloaded.
        """
        super().__init__()
        from torchvision import models

        try:
            if weights and weights.upper().startswith("IMAGENET"):  # "imagenet" or a torchvision weights name
                spec = "DEFAULT" if weights.lower() == "imagenet" else weights
                net = online(lambda: models.get_model(arch, weights=spec), f"weights {weights!r} of {arch!r}",
                             "could not be had", source=torchvision_source(arch, spec))
            else:
                net = models.get_model(arch, weights=None)
                if weights:
                    _load_into(net, load_state_file(weights), weights, ())
        except ValueError as exc:
            raise DlcvError(f"torchvision model {arch!r}: {exc}") from None
        linears = [(name, module) for name, module in net.named_modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise DlcvError(f"torchvision model {arch!r} has no linear classifier to replace")
        name, last = linears[-1]
        net.set_submodule(name, nn.Identity())
        self.net = net
        self.feature_dim = last.in_features
        self.head = nn.Linear(last.in_features, num_classes)

    def forward_features(self, x):
        return self.net(x)
