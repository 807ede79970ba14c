"""Models by name, recipes with their checks, and the NumPy metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcv.config import load_recipe, parse_overrides
from dlcv.errors import DlcvError
from dlcv.metrics.classification import accuracy, confusion_matrix, per_class_accuracy
from dlcv.models import create_model, list_models
from dlcv.recipes import ClassifyRecipe

INPUT_SIZE = {"alexnet": 224}


@pytest.mark.parametrize("name", ["alexnet", "cnn3", "dlcv_net", "resnet_small", "vgg13_bn"])
def test_every_model_maps_images_to_class_scores_and_features(name):
    assert name in list_models()
    model = create_model(name, num_classes=7).eval()
    size = INPUT_SIZE.get(name, 32)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert features.shape == (2, model.feature_dim)
    assert logits.shape == (2, 7)


def test_vgg13_bn_has_r3s_widths():
    convs = [m.out_channels for m in create_model("vgg13_bn", num_classes=50).modules()
             if isinstance(m, torch.nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 512, 512, 512, 512]


def test_dlcv_net_whitening_stem_whitens_the_patches_of_its_images_and_stays_frozen():
    torch.manual_seed(0)
    # Correlated channels and neighbouring pixels, as in photographs.
    base = torch.randn(64, 1, 32, 32).cumsum(-1).cumsum(-2) / 8
    x = torch.cat([base, 0.7 * base + 0.3 * torch.randn_like(base), base.roll(1, -1) + 0.5 * torch.randn_like(base)], 1)
    model = create_model("dlcv_net", num_classes=5, widths=[8, 8, 8], whiten=True)
    stem = model.stem[0]
    assert not stem.weight.requires_grad and stem.bias.requires_grad
    model.init_from_images(x)
    with torch.no_grad():
        out = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate"), stem.weight)
    half = out[:, :12].permute(1, 0, 2, 3).reshape(12, -1).double()
    second_moment = half @ half.T / half.shape[1]
    patches = torch.nn.functional.pad(x.double(), (0, 1, 0, 1), mode="replicate").unfold(2, 2, 1).unfold(3, 2, 1)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    values = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    # Uncorrelated outputs of unit second moment, but for eps = 5e-4, which damps the weakest directions.
    assert torch.allclose(second_moment, torch.diag(values / (values + 5e-4)), atol=1e-3)
    assert torch.equal(out[:, 12:], -out[:, :12])
    plain = create_model("dlcv_net", num_classes=5, widths=[8, 8, 8])
    before = plain.stem[0].weight.clone()
    plain.init_from_images(x)  # without whiten: nothing
    assert plain.stem[0].weight.requires_grad and torch.equal(plain.stem[0].weight, before)


def test_dlcv_net_whitening_needs_its_24_channel_stem():
    with pytest.raises(DlcvError, match="model.args.whiten: the whitening stem has 24 channels.*not stem_width 16"):
        create_model("dlcv_net", num_classes=3, whiten=True, stem_width=16)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(DlcvError, match="unknown model 'resnet9000'.*dlcv_net"):
        create_model("resnet9000", num_classes=3)


def test_wrong_model_argument_is_a_clear_error():
    with pytest.raises(DlcvError, match="model.args.colour is not an argument of model 'dlcv_net'"):
        create_model("dlcv_net", num_classes=3, colour="red")


def test_recipe_overrides_defaults_and_takes_its_name_from_the_file(tmp_path):
    path = tmp_path / "exp1.yaml"
    path.write_text("optim: {lr: 0.3}\nmodel: {name: cnn3, args: {hidden: 64}}\n")
    recipe = load_recipe(ClassifyRecipe, path, ["train.epochs=7"])
    assert recipe.name == "exp1"
    assert recipe.optim.lr == 0.3 and recipe.optim.momentum == 0.9
    assert recipe.model.model_dump() == {"name": "cnn3", "args": {"hidden": 64}}
    assert recipe.train.epochs == 7


def test_another_model_starts_its_arguments_afresh_and_the_same_model_merges_them(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: cnn3, args: {hidden: 64}}\n")
    other = load_recipe(ClassifyRecipe, path, ["model.name=dlcv_net", "model.args.widths=[8, 16, 16]"])
    assert other.model.model_dump() == {"name": "dlcv_net", "args": {"widths": [8, 16, 16]}}
    same = load_recipe(ClassifyRecipe, path, ["model.name=cnn3", "model.args.widths=[8, 16, 16]"])
    assert same.model.model_dump() == {"name": "cnn3", "args": {"hidden": 64, "widths": [8, 16, 16]}}


def test_unknown_recipe_key_is_an_error_naming_file_and_key(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("optim: {lrate: 0.3}\n")
    with pytest.raises(DlcvError, match=r"typo\.yaml: unknown recipe key 'optim\.lrate'"):
        load_recipe(ClassifyRecipe, path)


def test_invalid_yaml_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("optim: {lr: [\n")
    with pytest.raises(DlcvError, match=r"broken\.yaml: not valid YAML"):
        load_recipe(ClassifyRecipe, path)


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=text"]) == {"a": {"b": 3, "c": [1, 2]}, "d": "text"}
    with pytest.raises(DlcvError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"])


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert np.allclose(per_class_accuracy(cm), [0.5, 1.0, 0.5])
    assert accuracy(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0])) == pytest.approx(0.6)


def test_class_without_images_has_no_accuracy():
    assert np.isnan(per_class_accuracy(confusion_matrix(np.array([0]), np.array([1]), 2))[1])


@pytest.mark.parametrize("override, message", [
    ({"embed": {"epochs": "first,99"}}, "embed.epochs: '99' is not first, middle, last"),
])
def test_recipe_values_are_checked_before_training(override, message):
    from dlcv.config import merge, validated

    recipe = merge(ClassifyRecipe().model_dump(), {"name": "x", **override}, "test")
    with pytest.raises(DlcvError, match=message):
        validated(ClassifyRecipe, recipe)
