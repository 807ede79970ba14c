"""Deterministic synthetic data in exactly the course's formats (the embedded default data).

A class is a shape in its own hue (problem 1), or a texture filling the image (self-supervised: every crop keeps it).
"""

from __future__ import annotations

import colorsys
import csv
import math
import os
from pathlib import Path

import numpy as np

from dlcv.data.masks import MaskCodec
from dlcv.errors import DlcvError
from dlcv.files import read_manifest
from dlcv.io import check_output_folder, save_torch, staged_folder
from dlcv.rules import memory_refusal

SHAPES = ("disc", "square", "triangle", "cross", "ring", "bar")
SYNTH_KIND = "synthetic data set"  # the manifest kind of p1_data/ and p2_data/ written here (dlcv.io)
P2_PARTS = ("train", "validation")  # p2_data/ holds the satellite pairs and the self-supervised
SSL_PARTS = ("mini", "office", "pretrain_model_SL.pt")  # problem's data side by side, each kept by the other
P1_PARTS = ("train_50", "val_50", "val_gt.csv")
MAX_P1_IMAGES = 1_000_000  # 40 times the course's 25,000: more is hours of drawing and a folder no one lists
MAX_P2_PIXELS = 2**34  # about 30 times the course's 2,257 satellite tiles of 512x512
P2_BYTES_PER_PIXEL = 120  # draw_p2_pair's peak: nine float32 distance maps and their temporaries, coordinates, noise


def is_synthetic(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` lies in a synthetic data set of this module (its manifest on it or up to two folders above).

    Runs on such data are never set beside the course's scores.
    """
    path = Path(folder).resolve()
    return any((read_manifest(candidate) or {}).get("kind") == SYNTH_KIND for candidate in (path, *path.parents[:2]))


def _data_target(output: str | os.PathLike, name: str, parts: tuple[str, ...], overwrite: bool) -> Path:
    """Return ``output/name`` once ``parts`` may be written there, else raise ``DlcvError``.

    They may when none of them exists yet, or with ``overwrite`` when the folder is dlcv's synthetic data (a course
    data folder is never replaced).
    """
    target = Path(output) / name
    existing = [p for p in parts if (target / p).exists()]
    if existing and not overwrite:
        raise DlcvError(f"{target}: already holds {existing[0]}; pass --overwrite to replace it")
    check_output_folder(target, SYNTH_KIND, overwrite=True, need_parent=False)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DlcvError(f"{target.parent}: cannot be created ({exc.strerror})") from None
    return target


def _shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean (size, size) mask of ``shape`` at a random centre, radius and angle."""
    r = rng.uniform(0.22, 0.36) * size
    cx, cy = rng.uniform(r * 0.8, size - r * 0.8, 2)
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dx, dy = x - cx, y - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    dist = np.hypot(dx, dy)
    if shape == "disc":
        return dist < r
    if shape == "ring":
        return (dist < r) & (dist > 0.55 * r)
    if shape == "square":
        return (np.abs(u) < 0.8 * r) & (np.abs(v) < 0.8 * r)
    if shape == "cross":
        return ((np.abs(u) < 0.3 * r) & (np.abs(v) < r)) | ((np.abs(v) < 0.3 * r) & (np.abs(u) < r))
    if shape == "bar":
        return (np.abs(u) < r) & (np.abs(v) < 0.35 * r)
    # triangle: three half-planes around the centre
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        a = angle + k * 2 * np.pi / 3
        inside &= (dx * np.cos(a) + dy * np.sin(a)) < 0.5 * r
    return inside


def draw_p1_image(label: int, num_classes: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw one synthetic (size, size, 3) uint8 image of class ``label``: its shape, in its hue, on a noisy background.

    Args:
        label: the class, 0 to ``num_classes`` - 1; the shape cycles fastest, the hue over the rest.
        num_classes: classes in the set, which the hues are spread over.
        rng: the random generator.
        size: the side in pixels.
    """
    shape = SHAPES[label % len(SHAPES)]
    hue = (label // len(SHAPES)) / -(-num_classes // len(SHAPES))  # shapes cycle fastest, hues spread over the rest
    image = np.full((size, size, 3), rng.uniform(0.15, 0.85, 3), dtype=np.float32)
    # A smooth random gradient and pixel noise make the background something to ignore.
    gy, gx = np.mgrid[0:size, 0:size] / size
    image += (rng.normal(0, 0.12, 3) * gx[..., None] + rng.normal(0, 0.12, 3) * gy[..., None])
    colour = colorsys.hsv_to_rgb((hue + rng.normal(0, 0.02)) % 1.0, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    image[_shape_mask(shape, size, rng)] = colour
    image += rng.normal(0, 0.05, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


TEXTURES = ("vertical stripes", "horizontal stripes", "checks", "dots", "grid", "blobs")


def _texture_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean (size, size) texture of ``kind`` (one of TEXTURES) at a random period, phase and tilt."""
    period = rng.uniform(0.18, 0.3) * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + rng.uniform(0, period, 2)[:, None, None]
    tilt = rng.uniform(-0.15, 0.15)
    u, v = x + tilt * y, y - tilt * x
    across, down = np.sin(2 * np.pi * u / period), np.sin(2 * np.pi * v / period)
    if kind == "vertical stripes":
        return across > 0
    if kind == "horizontal stripes":
        return down > 0
    if kind == "checks":
        return (across > 0) ^ (down > 0)
    if kind == "dots":
        return np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period) > 1.0
    if kind == "grid":
        return (np.cos(2 * np.pi * u / period) > 0.6) | (np.cos(2 * np.pi * v / period) > 0.6)
    # blobs: coarse Gaussian noise, smoothly enlarged, thresholded at zero
    from PIL import Image

    cells = max(2, int(size / period) + 1) + 1
    coarse = Image.fromarray(rng.normal(size=(cells, cells)).astype(np.float32))
    return np.asarray(coarse.resize((size, size), Image.BICUBIC)) > 0


def draw_texture(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Draw one (size, size, 3) uint8 image of the self-supervised class ``label``: ``TEXTURES[label]``, tinted."""
    mask = _texture_mask(TEXTURES[label], size, rng)
    dark, light = rng.uniform(0.0, 0.35), rng.uniform(0.65, 1.0)
    tint = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.5), 1.0))
    image = np.where(mask[..., None], light, dark) * tint + rng.normal(0, 0.04, (size, size, 3))
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _save(array: np.ndarray, path: Path) -> None:
    """``array`` as the image file ``path``, its format from the suffix (a JPEG at quality 90)."""
    from PIL import Image

    Image.fromarray(array).save(path, quality=90)


def check_p1_sizes(num_classes: int, train_per_class: int, val_per_class: int) -> None:
    """Refuse, before anything is written, a Problem 1 data set too small to train on or too large to draw.

    Raises:
        DlcvError: if there are fewer than 2 classes or 1 image per class and split, or more than
            ``MAX_P1_IMAGES`` images in all.
    """
    if num_classes < 2 or train_per_class < 1 or val_per_class < 1:
        raise DlcvError("synthetic data needs at least 2 classes and 1 image per class and split")
    if num_classes * (train_per_class + val_per_class) > MAX_P1_IMAGES:
        raise DlcvError(f"--classes {num_classes} with --train-per-class {train_per_class} and --val-per-class "
                        f"{val_per_class}: {num_classes * (train_per_class + val_per_class)} images to draw; give at "
                        f"most {MAX_P1_IMAGES} in all")


def synth_p1(output: str | os.PathLike, num_classes: int = 10, train_per_class: int = 100,
             val_per_class: int = 20, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a synthetic Problem 1 set ``output/p1_data`` (train_50/, val_50/, val_gt.csv) in the course's layout.

    The folder is staged, so an interrupted run leaves no partial data set; the images are 32x32 PNGs, and a class's
    validation images take the indices after its training ones.

    Args:
        output: the folder to write ``p1_data`` into.
        num_classes: classes, at least 2.
        train_per_class: training images per class.
        val_per_class: validation images per class.
        seed: seeds the drawing.
        overwrite: replace the synthetic data already there (a course data folder is never replaced).

    Returns:
        the ``p1_data`` folder.

    Raises:
        DlcvError: if ``check_p1_sizes`` refuses the sizes, or the folder holds data that may not be replaced.
    """
    check_p1_sizes(num_classes, train_per_class, val_per_class)
    target = _data_target(output, "p1_data", P1_PARTS, overwrite)
    with staged_folder(target, overwrite=True, kind=SYNTH_KIND) as staging:
        (staging / "train_50").mkdir()
        (staging / "val_50").mkdir()
        rng = np.random.default_rng(seed)
        rows = []
        for label in range(num_classes):
            for index in range(train_per_class + val_per_class):
                name = f"{label}_{index}.png"
                split = "train_50" if index < train_per_class else "val_50"
                _save(draw_p1_image(label, num_classes, rng), staging / split / name)
                if split == "val_50":
                    rows.append((name, label))
        with open(staging / "val_gt.csv", "w", newline="") as handle:
            csv.writer(handle).writerows([("filename", "label"), *sorted(rows)])
    return target


# --- Problem 2: satellite-like images with land-cover masks ------------------------------------------
# Per class: a base colour and a texture, loosely like the real tiles (Unknown is rare and black).
_P2_LOOK = {
    0: ((0.55, 0.55, 0.58), "blocks"),  # Urban: grey blocks
    1: ((0.78, 0.70, 0.35), "stripes"),  # Agriculture: yellow-brown fields in rows
    2: ((0.55, 0.62, 0.35), "noise"),  # Rangeland: dry green
    3: ((0.12, 0.35, 0.12), "blobs"),  # Forest: dark green canopy
    4: ((0.08, 0.15, 0.45), "smooth"),  # Water: dark blue
    5: ((0.80, 0.75, 0.65), "noise"),  # Barren: pale sand
}


def draw_p2_pair(rng: np.random.Generator, size: int = 512, regions: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic satellite-like image and its class map.

    The image is Voronoi cells with wavy borders, one class each (Unknown rare), painted in each class's colour and
    texture with shading and noise.

    Args:
        rng: the random generator.
        size: the side in pixels.
        regions: the number of Voronoi cells.

    Returns:
        ``(image, classes)``: (size, size, 3) uint8 and (size, size) uint8 class indices.
    """
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    wx = x + 0.03 * np.sin(2 * np.pi * (3 * y + rng.uniform()))
    wy = y + 0.03 * np.sin(2 * np.pi * (3 * x + rng.uniform()))
    seeds = rng.uniform(0, 1, (regions, 2)).astype(np.float32)
    distance = (wx[None] - seeds[:, 0, None, None]) ** 2 + (wy[None] - seeds[:, 1, None, None]) ** 2
    cell = distance.argmin(0)
    cell_class = rng.choice(7, size=regions, p=[0.16, 0.2, 0.15, 0.18, 0.13, 0.16, 0.02])
    classes = cell_class[cell].astype(np.uint8)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for label, (colour, texture) in _P2_LOOK.items():
        inside = classes == label
        if not inside.any():
            continue
        tone = np.array(colour, dtype=np.float32) * rng.uniform(0.85, 1.15)
        if texture == "stripes":
            angle = rng.uniform(0, np.pi)
            pattern = 0.12 * np.sign(np.sin(2 * np.pi * 40 * (x * np.cos(angle) + y * np.sin(angle))))
        elif texture == "blocks":
            pattern = 0.15 * (((x * 24).astype(int) + (y * 24).astype(int)) % 2) - 0.07
        elif texture == "blobs":
            pattern = 0.1 * np.sin(2 * np.pi * 30 * x) * np.sin(2 * np.pi * 30 * y)
        elif texture == "smooth":
            pattern = 0.03 * np.sin(2 * np.pi * 4 * (x + y))
        else:
            pattern = np.zeros_like(x)
        image[inside] = tone + pattern[inside, None]
    image += 0.05 * (x[..., None] - 0.5) + rng.normal(0, 0.04, image.shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), classes


def check_p2_sizes(train: int, validation: int, size: int) -> None:
    """Refuse, before anything is written, a synthetic satellite set too small or too large to draw.

    Raises:
        DlcvError: if a split has no pair, the side is below 32 pixels, drawing one pair exceeds the machine's
            memory, or the pixels in all exceed ``MAX_P2_PIXELS``.
    """
    if train < 1 or validation < 1 or size < 32:
        raise DlcvError("synthetic satellite data needs at least 1 pair per split and images of at least 32 pixels")
    refusal = memory_refusal(f"--p2-size {size}: drawing one {size}x{size} pair at {P2_BYTES_PER_PIXEL} bytes a pixel",
                             size * size * P2_BYTES_PER_PIXEL, lambda limit: math.isqrt(limit // P2_BYTES_PER_PIXEL),
                             accelerator="cpu")
    if refusal:
        raise DlcvError(refusal)
    if (train + validation) * size * size > MAX_P2_PIXELS:
        raise DlcvError(f"--p2-train {train} and --p2-validation {validation} at --p2-size {size}: "
                        f"{(train + validation) * size * size:.3g} pixels to draw; give at most {MAX_P2_PIXELS:.3g} "
                        "in all (fewer pairs or a smaller size)")


def synth_p2(output: str | os.PathLike, train: int = 24, validation: int = 8, size: int = 512, seed: int = 0,
             overwrite: bool = False) -> Path:
    """Write a synthetic satellite set ``output/p2_data`` (train/, validation/) in the course's layout.

    Each split holds ``NNNN_sat.jpg`` images with their ``NNNN_mask.png`` masks; the self-supervised data already in
    ``p2_data`` is kept.

    Args:
        output: the folder to write ``p2_data`` into.
        train: training pairs.
        validation: validation pairs.
        size: the images' side in pixels, at least 32.
        seed: seeds the drawing.
        overwrite: replace the synthetic pairs already there (a course data folder is never replaced).

    Returns:
        the ``p2_data`` folder.

    Raises:
        DlcvError: if ``check_p2_sizes`` refuses the sizes, or the folder holds data that may not be replaced.
    """
    check_p2_sizes(train, validation, size)
    target = _data_target(output, "p2_data", P2_PARTS, overwrite)
    with staged_folder(target, overwrite=True, kind=SYNTH_KIND, keep=SSL_PARTS) as staging:
        rng = np.random.default_rng(seed + 1)
        for split, count in (("train", train), ("validation", validation)):
            (staging / split).mkdir()
            for index in range(count):
                image, classes = draw_p2_pair(rng, size)
                _save(image, staging / split / f"{index:04d}_sat.jpg")
                _save(MaskCodec.encode(classes), staging / split / f"{index:04d}_mask.png")
    return target


# --- The self-supervised problem: Mini-ImageNet, Office-Home and the course's supervised backbone ------------
def synth_ssl(output: str | os.PathLike, num_classes: int = 6, mini: int = 2000, office_train_per_class: int = 12,
              office_val_per_class: int = 20, arch: str = "resnet50", seed: int = 0, overwrite: bool = False) -> Path:
    """Write the synthetic self-supervised data under ``output/p2_data``, keeping the satellite pairs there.

    It writes ``mini/train/*.jpg`` (unlabelled, 84x84), ``office/{train,val}/`` with ``train.csv`` / ``val.csv``
    (``id,filename,label``; sides of 48 to 96 pixels, mixed as Office-Home's) and ``pretrain_model_SL.pt`` (the
    state_dict of a randomly initialised torchvision ``arch`` of 1000 outputs); the images are ``draw_texture``'s.

    Args:
        output: the folder to write ``p2_data`` into.
        num_classes: texture classes, 2 to ``len(TEXTURES)``.
        mini: unlabelled images, at least 2.
        office_train_per_class: Office-Home training images per class.
        office_val_per_class: Office-Home validation images per class.
        arch: the torchvision model name of the backbone file.
        seed: seeds the drawing and the backbone's initialisation.
        overwrite: replace the synthetic data already there (a course data folder is never replaced).

    Returns:
        the ``p2_data`` folder.

    Raises:
        DlcvError: if a count is out of range, ``arch`` is not a torchvision model, or the folder holds data that may
            not be replaced.
    """
    import torch
    from torchvision import models

    from dlcv.data.office import write_office_csv

    if not 2 <= num_classes <= len(TEXTURES) or mini < 2 or office_train_per_class < 1 or office_val_per_class < 1:
        raise DlcvError(f"synthetic self-supervised data needs 2 to {len(TEXTURES)} classes, 2 unlabelled images "
                        "and 1 Office-Home image per class and split")
    target = _data_target(output, "p2_data", SSL_PARTS, overwrite)
    with staged_folder(target, overwrite=True, kind=SYNTH_KIND, keep=P2_PARTS) as staging:
        unlabelled = staging / "mini" / "train"
        unlabelled.mkdir(parents=True)
        rng = np.random.default_rng(seed + 2)
        for index in range(mini):
            _save(draw_texture(int(rng.integers(num_classes)), rng, size=84), unlabelled / f"{index:05d}.jpg")
        for split, per_class in (("train", office_train_per_class), ("val", office_val_per_class)):
            (staging / "office" / split).mkdir(parents=True)
            rows = []
            for label in range(num_classes):
                for index in range(per_class):
                    name = f"{label}_{index}.jpg"
                    _save(draw_texture(label, rng, size=int(rng.integers(48, 97))), staging / "office" / split / name)
                    rows.append((name, label))
            write_office_csv(staging / "office" / f"{split}.csv", ((i, *row) for i, row in enumerate(rows)))
        with torch.random.fork_rng(devices=[]):  # torchvision's own initialisation, seeded
            torch.manual_seed(seed)
            try:
                net = models.get_model(arch, weights=None)
            except ValueError:
                raise DlcvError(f"backbone arch {arch!r}: not a torchvision model") from None
        save_torch(net.state_dict(), staging / "pretrain_model_SL.pt")
    return target
