"""The embedded default data: deterministic, in the course's layout, with classes a model can learn."""

from __future__ import annotations

import csv
import hashlib

import numpy as np

from dlcv.data.images import list_images, load_image_stack
from dlcv.data.synth import synth_p1


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
    assert not (tmp_path / ".p1_data.partial").exists()


def test_classes_differ_more_between_than_within(tmp_path):
    """A nearest-class-mean classifier on raw pixels beats chance clearly: there is structure to learn."""
    root = synth_p1(tmp_path, num_classes=6, train_per_class=30, val_per_class=10)
    def load(folder):
        files = list_images(folder)
        x = load_image_stack(files, use_cache=False).reshape(len(files), -1).astype(np.float32)
        return x, np.array([int(p.name.split("_")[0]) for p in files])
    x, y = load(root / "train_50")
    means = np.stack([x[y == c].mean(0) for c in range(6)])
    vx, vy = load(root / "val_50")
    predicted = np.argmin(((vx[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == vy).mean() > 0.3  # chance is 1/6
