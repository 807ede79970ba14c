"""Segmentation batches: image and mask cropped, resized and turned together, straight from uint8 caches.

Crops are cut on the CPU as planar uint8 and only they become float, on the training device. The draws are seeded by
(seed, epoch), so an epoch's crops are the same whenever it runs, a resumed one included.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlcv.data.augment import planes_to_float, resize_float, scale_shift, segment_input
from dlcv.data.batches import FolderData, Split, TensorBatches, validation_folder
from dlcv.data.kinds import check_kind
from dlcv.data.masks import MaskCodec
from dlcv.data.p2 import SatelliteSet, find_pairs, load_pairs, random_holdout
from dlcv.errors import DlcvError
from dlcv.runtime import usable_cpus


def crop_params(batch: int, side: int, scale: tuple[float, float], flip: bool, rot90: bool,
                generator: torch.Generator) -> list[tuple[int, int, int, bool, int]]:
    """Draw each sample's crop, mirror and quarter turns for square tiles of ``side`` pixels.

    Args:
        batch: samples to draw for.
        side: the tiles' side in pixels.
        scale: ``(low, high)`` bounds of the crop side as a fraction of ``side``, drawn log-uniform.
        flip: draw a mirror with probability 0.5.
        rot90: draw 0 to 3 quarter turns.
        generator: the random generator.

    Returns:
        one ``(crop side, top, left, mirror, quarter turns)`` per sample, sides and offsets in pixels.
    """
    lo, hi = math.log(scale[0]), math.log(scale[1])
    fraction = torch.exp(lo + (hi - lo) * torch.rand(batch, generator=generator))
    sides = (fraction * side).round().long().clamp(1, side)
    tops = (torch.rand(batch, generator=generator) * (side - sides + 1)).long()
    lefts = (torch.rand(batch, generator=generator) * (side - sides + 1)).long()
    mirror = (torch.rand(batch, generator=generator) < 0.5) & flip
    turns = torch.randint(0, 4, (batch,), generator=generator) if rot90 else torch.zeros(batch, dtype=torch.long)
    return list(zip(sides.tolist(), tops.tolist(), lefts.tolist(), mirror.tolist(), turns.tolist()))


@functools.cache
def _nearest_rows(side: int, size: int) -> np.ndarray:
    """Source row of each of ``size`` rows when ``side`` are resized ``nearest-exact``, read off ``F.interpolate``."""
    ramp = torch.arange(side, dtype=torch.float32).view(1, 1, 1, side)
    return F.interpolate(ramp, size=(1, size), mode="nearest-exact").view(size).long().numpy()


def crop_pair(image: torch.Tensor, mask: np.ndarray, params: tuple, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Crop, resize, mirror and turn one image and its mask together.

    The mask's nearest resize, mirror and turn are one gather of the tile's rows, then of its columns: the same
    pixels as ``F.interpolate`` and ``torch.rot90`` give, for less work.

    Args:
        image: (H, W, 3) uint8 image.
        mask: (H, W) uint8 class indices.
        params: ``(crop side, top, left, mirror, quarter turns)`` from ``crop_params``.
        size: the output side in pixels.

    Returns:
        the planar (3, size, size) image (anti-aliased bilinear resize, in ``image``'s dtype) and the (size, size)
        numpy mask.
    """
    side, top, left, mirror, turns = params
    crop = image[top : top + side, left : left + side].permute(2, 0, 1).unsqueeze(0)  # NCHW view, channels-last
    out = resize_float(crop, size)[0]
    if mirror:
        out = out.flip(2)
    if turns:
        out = torch.rot90(out, turns, (1, 2))
    pick = _nearest_rows(side, size)
    rows, cols = pick + top, pick + left
    if mirror:
        cols = cols[::-1]
    # A quarter turn k times of x is x with its rows reversed (k = 2, 3) and its columns reversed (k = 1, 2),
    # transposed when k is odd: rot90(x, 1)[i, j] = x[j, W-1-i], rot90(x, 3)[i, j] = x[H-1-j, i].
    if turns in (2, 3):
        rows = rows[::-1]
    if turns in (1, 2):
        cols = cols[::-1]
    labels = mask.take(rows, 0).take(cols, 1)
    return out, labels.T if turns % 2 else labels


def _next_or_none(items, lock: threading.Lock):
    """The next of an iterator shared by threads, or None at its end."""
    with lock:
        return next(items, None)


@contextlib.contextmanager
def _crop_pool(workers: int):
    """Yield a thread pool whose workers run torch kernels on one thread each.

    An OpenMP team per worker would fight for the cores. ``torch.set_num_threads`` also sets the default that later
    threads take, so it is put back once every worker has set its own: the calling thread keeps its count.
    """
    threads = torch.get_num_threads()  # the calling thread's count (and its own setting made first)
    ready = threading.Barrier(workers + 1, timeout=60)

    def start() -> None:
        # Read the count before setting it: a thread that never read it takes the default put back below.
        torch.get_num_threads()
        torch.set_num_threads(1)
        ready.wait()

    with ThreadPoolExecutor(workers, initializer=start) as pool:
        for _ in range(workers):
            pool.submit(int)  # start every worker now (each submit finds none idle: a new thread)
        ready.wait()
        torch.set_num_threads(threads)
        yield pool


class SegmentationBatches(TensorBatches):
    """Training batches of augmented crops: ``(images (B, 3, S, S), masks (B, S, S))``, S = ``data.train_size``.

    Samples are made on a small thread pool (PyTorch releases the GIL in its kernels). On a CPU the workers also
    normalise: a whole batch converted on the training thread would wake an OpenMP team that spins on the cores the
    next crops need.
    """

    def __init__(self, images, masks, batch_size: int, cfg, normalize: tuple | None = None, **kwargs):
        """Initialise the batches.

        Args:
            images: (N, H, W, 3) uint8 square tiles.
            masks: (N, H, W) uint8 class indices.
            batch_size: samples per batch.
            cfg: the recipe's ``data`` section (``train_size``, ``scale``, ``flip``, ``rot90``).
            normalize: ``(mean, std)`` for batches of normalised float32 images and int64 masks, as
                ``planes_to_float`` and ``long()`` give them (training on the CPU); None: uint8 images and masks,
                converted on the device.
            **kwargs: further arguments of ``TensorBatches``.
        """
        super().__init__(images, masks, batch_size, **kwargs)
        self.cfg = cfg
        self.workers = max(1, min(4, usable_cpus()))
        self.normalize = None if normalize is None else tuple(v.view(-1, 1, 1) for v in scale_shift(*normalize))

    def __iter__(self):
        cfg, size = self.cfg, self.cfg.train_size
        epoch = self._next_epoch()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch * 7919 + self.rank)
        order = self._indices(epoch)
        side = self.images.shape[1]
        finish, labels = self.normalize, self.labels.numpy()
        draws = crop_params(len(order), side, tuple(cfg.scale), cfg.flip, cfg.rot90, generator)
        with _crop_pool(self.workers) as pool:
            for i in range(len(self)):
                index = order[i * self.batch_size : (i + 1) * self.batch_size].tolist()
                params = draws[i * self.batch_size : (i + 1) * self.batch_size]
                images = torch.empty(len(index), 3, size, size, dtype=torch.float32 if finish else torch.uint8)
                masks = torch.empty(len(index), size, size, dtype=torch.int64 if finish else torch.uint8)
                slots = masks.numpy()  # the masks' gathers are numpy's

                todo, lock = iter(range(len(index))), threading.Lock()

                def work(_, index=index, params=params, images=images, masks=slots, todo=todo, lock=lock) -> None:
                    # One task per worker, taking samples until none is left: a task per sample costs more hand-offs.
                    while (j := _next_or_none(todo, lock)) is not None:
                        images[j], masks[j] = crop_pair(self.images[index[j]], labels[index[j]], params[j], size)
                        if finish:
                            images[j].mul_(finish[0]).add_(finish[1])

                list(pool.map(work, range(self.workers)))
                yield images, masks


class SegmentationData(FolderData):
    """Problem 2's data: the pairs of ``root/data.train``, validated on ``root/data.validation`` or a holdout share.

    With ``data.holdout`` > 0 the holdout selects checkpoints and the validation folder (if any) is scored at the end.
    """

    def __init__(self, root: str | os.PathLike, cfg, seed: int, plan=None):
        super().__init__(root, cfg, seed, plan)
        self.codec = MaskCodec(cfg.unmapped)

    def read(self, cfg) -> None:
        if not (self.root / cfg.train).is_dir():
            check_kind(self.root, "satellite")
        train = find_pairs(self.root / cfg.train)
        val_folder = validation_folder(self.root, cfg)
        whole = self._split(train, self.root / cfg.train)
        validation = self._split(find_pairs(val_folder), val_folder) if val_folder else None
        self.split(whole, validation, cfg.holdout, lambda share: random_holdout(len(train), share, self.seed))

    def describe(self) -> str:
        return (f"{len(self.train)} training pairs, {len(self.val)} validation pairs, training at "
                f"{self.cfg.train_size}px, model input {self.cfg.eval_size}px")

    def progress_images(self, wanted: list, strict: bool = True) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """Return the validation images whose predicted masks are kept through training.

        They come from the validation folder when there is one, even under a holdout (drawing them decides nothing),
        else from the holdout share.

        Args:
            wanted: the ids to keep; ids the set lacks are skipped unless ``strict``, and with none left the first
                three images are taken.
            strict: refuse an id the set lacks (ids a recipe chose, not the defaults).

        Returns:
            ``(ids, images, masks)``: the K ids, (K, H, W, 3) uint8 images and (K, H, W) uint8 class maps.

        Raises:
            DlcvError: if ``strict`` and the set lacks a wanted id.
        """
        source = self.final if self.final is not None else self.val
        missing = [w for w in wanted if w not in source.names]
        if missing and strict:
            raise DlcvError(f"progress.images: {source.folder} has no image of id {missing[0]!r} (its ids run "
                            f"{min(source.names)} to {max(source.names)}); give ids of that folder, or "
                            "progress.epochs: '' for no masks through training")
        picks = [source.names.index(w) for w in wanted if w in source.names] or list(range(min(3, len(source))))
        return [source.names[i] for i in picks], source.x[picks], source.y[picks]

    def _split(self, pairs: SatelliteSet, folder: Path) -> Split:
        """Decode ``pairs`` into a ``Split`` named by id, copied into RAM so that batches index plain memory."""
        images, masks = load_pairs(pairs, self.codec, use_cache=self.cfg.cache)
        return Split(torch.from_numpy(np.array(images)), torch.from_numpy(np.array(masks)), pairs.ids, folder)

    def train_dataloader(self) -> TensorBatches:
        trainer = self.trainer
        on_cpu = trainer is not None and trainer.strategy.root_device.type == "cpu"
        normalize = (self.cfg.mean, self.cfg.std) if on_cpu else None
        return self.train_batches(self.train.x, self.train.y, batches_type=SegmentationBatches, cfg=self.cfg,
                                  normalize=normalize)

    def convert_batch(self, images: torch.Tensor, masks: torch.Tensor, training: bool) -> tuple:
        if not training:
            return segment_input(images, self.cfg), masks.long()
        if images.is_floating_point():  # finished by the batches' workers (training on the CPU)
            return images, masks
        # already cropped to the training size on the CPU, planar
        return planes_to_float(images, self.cfg.mean, self.cfg.std), masks.long()
