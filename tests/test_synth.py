"""The embedded default data: deterministic, in the course's layout, with classes a model can learn."""

from __future__ import annotations

import csv
import hashlib

from dlcv.data.images import load_image_stack
from dlcv.data.synth import synth_p1
from dlcv.files import list_images


def _digest(folder):
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*.png")))).hexdigest()


def test_same_seed_writes_the_same_bytes(tmp_path):
    a = synth_p1(tmp_path / "a", num_classes=3, train_per_class=4, val_per_class=2)
    b = synth_p1(tmp_path / "b", num_classes=3, train_per_class=4, val_per_class=2)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(synth_p1(tmp_path / "c", num_classes=3, train_per_class=4, val_per_class=2, seed=1))


def test_layout_matches_the_course(tmp_path):
    root = synth_p1(tmp_path, num_classes=3, train_per_class=4, val_per_class=2)
    assert sorted(p.name for p in (root / "train_50").iterdir())[:3] == ["0_0.png", "0_1.png", "0_2.png"]
    assert sorted(p.name for p in (root / "val_50").iterdir()) == [f"{c}_{i}.png" for c in range(3) for i in (4, 5)]
    rows = list(csv.reader((root / "val_gt.csv").open()))
    assert rows[0] == ["filename", "label"] and rows[1] == ["0_4.png", "0"] and len(rows) == 7
    stack = load_image_stack(list_images(root / "train_50"), use_cache=False)
    assert stack.shape == (12, 32, 32, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["p1_data"]  # no staging folder left beside it


def test_a_small_network_learns_the_classes(tmp_path):
    """The classes have real structure: a few seconds of training beat chance (1/4) by far."""
    import json

    from dlcv.classify import fit

    root = synth_p1(tmp_path, num_classes=4, train_per_class=100, val_per_class=15)
    recipe = tmp_path / "learn.yaml"
    recipe.write_text("model: {name: dlcv_net, args: {widths: [16, 32, 32], stem_width: 8}}\n"
                      "data: {batch_size: 32}\noptim: {lr: 0.1}\ntrain: {epochs: 12, threads: 1}\n")
    run = fit(recipe, root, runs_dir=tmp_path / "runs")
    assert json.loads((run / "summary.json").read_text())["best_val_acc"] > 0.6


def test_ssl_textures_keep_their_class_in_any_crop_and_not_in_their_colour():
    """The self-supervised data's premise: a class is told apart by its texture in a crop of any image
    (the grey-level spectrum of a random half-size crop, nearest neighbour), and not by its colour (the
    mean colour, nearest neighbour), the cue BYOL's colour jitter takes away."""
    import numpy as np

    from dlcv.data.synth import TEXTURES, draw_texture
    from dlcv.metrics.embedding import knn_accuracy_against

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(len(TEXTURES)), 40)
    images = np.stack([draw_texture(int(label), rng, size=64) for label in labels]).astype(np.float32)
    corners = rng.integers(0, 33, (len(images), 2))
    crops = np.stack([im[y:y + 32, x:x + 32].mean(-1) for im, (y, x) in zip(images, corners)])
    spectrum = np.abs(np.fft.fft2(crops - crops.mean((1, 2), keepdims=True))).reshape(len(crops), -1)
    colour = images.mean((1, 2))
    bank, query = np.arange(len(labels)) % 2 == 0, np.arange(len(labels)) % 2 == 1
    chance = 1 / len(TEXTURES)

    def accuracy(features):
        return knn_accuracy_against(features[bank], labels[bank], features[query], labels[query], k=5)

    assert accuracy(spectrum) > 0.8 and accuracy(colour) < chance + 0.15
