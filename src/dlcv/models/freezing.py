"""Freezing a pretrained encoder's early stages, which cost most to train and change least.

Every model freezes the same way. A stage is a timm feature level at stride 4, 8, 16 or 32 (stride 2 is the stem's);
``freeze_stages: n`` freezes all through the n-th stage: no gradient, and batch norm kept in eval mode with its
pretrained statistics.
"""

from __future__ import annotations

from torch import nn

from dlcv.errors import DlcvError

STAGE_STRIDES = (4, 8, 16, 32)

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LazyBatchNorm1d,
               nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)  # every batch norm of torch.nn, by its public names


def freeze_encoder_stages(net: nn.Module, stages: int) -> list[nn.Module]:
    """Freeze ``net`` from its first module through the end of its ``stages``-th stage.

    Args:
        net: a timm model or ``features_only`` feature extractor (it has ``feature_info``).
        stages: how many stages to freeze; 0: none.

    Returns:
        The frozen batch-norm modules, which ``KeepsFrozenStatistics`` keeps in eval mode.

    Raises:
        DlcvError: if ``stages`` is not in 1..N, N the number of ``net``'s stages at strides 4-32.
    """
    if not stages:
        return []
    info = net.feature_info  # a features_only extractor's FeatureInfo, or a classifier's list of dicts
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
    modules = [d["module"] for d in dicts if d["reduction"] in STAGE_STRIDES]
    if not 1 <= stages <= len(modules):
        raise DlcvError(f"freeze_stages must lie in 1..{len(modules)}, got {stages}")
    last = modules[stages - 1]
    frozen: list[nn.Module] = []
    reached = False
    for name, module in net.named_modules():
        inside = name == last or name.startswith(last + ".")
        if reached and not inside:
            break
        reached = reached or inside
        if not name:
            continue
        for p in module.parameters(recurse=False):
            p.requires_grad = False
        if isinstance(module, BATCH_NORMS):
            frozen.append(module)
    return frozen


class KeepsFrozenStatistics(nn.Module):
    """A model whose ``frozen`` batch-norm modules stay in eval mode when it trains."""

    frozen: list[nn.Module]

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self
