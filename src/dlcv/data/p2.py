"""Problem 2's format: ``NNNN_sat.jpg`` satellite images with ``NNNN_mask.png`` land-cover masks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcv.data.images import load_image_stack
from dlcv.data.kinds import check_kind
from dlcv.data.masks import MASK_NAME, MaskCodec, read_mask
from dlcv.errors import DlcvError, mismatch_message
from dlcv.files import SAT_NAME, unique_ids


@dataclass(frozen=True)
class SatelliteSet:
    """Satellite image files in id order, with their mask files when the set is labelled."""

    ids: list[str]
    images: list[Path]
    masks: list[Path] | None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, indices) -> SatelliteSet:
        """Return the pairs at ``indices`` (e.g. a holdout drawn by ``random_holdout``), in that order."""
        return SatelliteSet([self.ids[i] for i in indices], [self.images[i] for i in indices],
                            None if self.masks is None else [self.masks[i] for i in indices])


def find_images(folder: str | os.PathLike) -> SatelliteSet:
    """List the ``NNNN_sat.jpg`` images of a folder by id; masks are not needed.

    Raises:
        DlcvError: if the folder is missing, holds no satellite images (or looks like another course folder), or
            holds two images of one id.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    images = unique_ids(folder, SAT_NAME)
    if not images:
        check_kind(folder, "tiles")
        raise DlcvError(f"{folder}: no satellite images (expected NNNN_sat.jpg)")
    ids = sorted(images)
    return SatelliteSet(ids, [images[i] for i in ids], None)


def find_pairs(folder: str | os.PathLike) -> SatelliteSet:
    """List the image and mask pairs of a folder, matched by id.

    Raises:
        DlcvError: if the folder is missing or holds no pairs, or an image lacks its mask or the reverse (the error
            names them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: no such folder")
    images, masks = unique_ids(folder, SAT_NAME), unique_ids(folder, MASK_NAME)
    if not images and not masks:
        raise DlcvError(f"{folder}: no image/mask pairs (expected NNNN_sat.jpg with NNNN_mask.png)")
    problem = mismatch_message(str(folder), [
        ("image(s) without a mask", [images[i].name for i in sorted(set(images) - set(masks))]),
        ("mask(s) without an image", [masks[i].name for i in sorted(set(masks) - set(images))])])
    if problem:
        raise DlcvError(problem)
    ids = sorted(images)
    return SatelliteSet(ids, [images[i] for i in ids], [masks[i] for i in ids])


def random_holdout(count: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(count)`` into sorted ``(train, holdout)`` indices, a seeded random ``fraction`` held out.

    Raises:
        DlcvError: if the holdout would leave no training pairs.
    """
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, round(fraction * count))
    if held >= count:
        raise DlcvError(f"data.holdout {fraction} leaves no training pairs of {count}")
    return np.sort(order[held:]), np.sort(order[:held])


def load_pairs(pairs: SatelliteSet, codec: MaskCodec, use_cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Decode a labelled set's images and masks, through the cache when ``use_cache``.

    Args:
        pairs: the labelled set.
        codec: maps the masks' colours to classes.
        use_cache: return read-only memory maps of the decoded-image cache.

    Returns:
        ``(images, masks)``: (N, H, W, 3) uint8 images and (N, H, W) uint8 class indices.

    Raises:
        DlcvError: if a file cannot be decoded, the sizes differ, or the masks' size is not the images'.
    """
    images = load_image_stack(pairs.images, use_cache=use_cache)
    masks = load_image_stack(pairs.masks, use_cache=use_cache, tag=f"masks-{codec.unmapped}",
                             decode=lambda path, size=None: read_mask(path, codec, size))
    if images.shape[1:3] != masks.shape[1:3]:
        raise DlcvError(f"{pairs.masks[0].parent}: masks are {masks.shape[2]}x{masks.shape[1]} but images are "
                        f"{images.shape[2]}x{images.shape[1]}")
    return images, masks
