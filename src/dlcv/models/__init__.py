"""Models as plain ``nn.Module``s built by name, e.g. ``create_model("dlcv_net", num_classes=50)``.

They know nothing of training, data or files. Every classifier exposes ``forward_features`` (the second-last layer,
one vector per image) and ``head`` (the classifier applied to it).
"""

from dlcv.models.registry import WEIGHT_ARGS, create_model, list_models, rebuild_args, register_model

__all__ = ["WEIGHT_ARGS", "create_model", "list_models", "rebuild_args", "register_model"]
