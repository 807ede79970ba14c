"""Batched augmentation on the device, and batches straight from in-memory tensors."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dlcv.data.augment import crop_flip, cutout, planes_to_float, prepare_batch, resize, to_float
from dlcv.data.batches import TensorBatches
from dlcv.recipes import ClassifyData


def _windows(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every H x W window of the reflect-padded image (HWC), and its mirror."""
    h, w, _ = image.shape
    padded = F.pad(image.permute(2, 0, 1).float(), (padding,) * 4, mode="reflect").permute(1, 2, 0)
    windows = [padded[dy : dy + h, dx : dx + w] for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)]
    return windows + [win.flip(1) for win in windows]


def test_to_float_normalises_and_is_channels_last():
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3).expand(2, 4, 4, 3)
    x = to_float(images, mean=[0.0, 0.2, 0.5], std=[1.0, 0.5, 0.25])
    assert x.shape == (2, 3, 4, 4)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([0.0, 0.0, 2.0]), atol=1e-6)
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_planes_to_float_gives_to_floats_values():
    images = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    mean, std = [0.1, 0.2, 0.5], [1.0, 0.5, 0.25]
    planar = planes_to_float(images.permute(0, 3, 1, 2).contiguous(), mean, std)
    assert torch.equal(planar, to_float(images, mean, std))


def test_crop_flip_gives_a_window_of_the_reflect_padded_image():
    images = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    out = crop_flip(images, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(32):
        assert any(torch.equal(out[i].float(), win) for win in _windows(images[i], 2))


def test_crop_flip_draws_differ_between_images():
    images = torch.randint(0, 256, (1, 8, 8, 3), dtype=torch.uint8).expand(64, 8, 8, 3)
    out = crop_flip(images, padding=2, flip=True, generator=torch.Generator().manual_seed(0))
    assert len({bytes(o.flatten().tolist()) for o in out}) > 10


def test_flip_alone_mirrors_about_half_and_keeps_the_rest():
    images = torch.randint(0, 256, (64, 5, 5, 3), dtype=torch.uint8)
    out = crop_flip(images, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    mirrored = [torch.equal(out[i], images[i].flip(1)) for i in range(64)]
    kept = [torch.equal(out[i], images[i]) for i in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept))
    assert 10 < sum(mirrored) < 54


def test_no_padding_and_no_flip_changes_nothing():
    images = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    assert torch.equal(crop_flip(images, padding=0, flip=False), images)


def test_prepare_batch_augments_only_for_training():
    cfg = ClassifyData()
    images = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    plain = prepare_batch(images, cfg)
    assert torch.equal(plain, to_float(images, cfg.mean, cfg.std))
    assert not torch.equal(prepare_batch(images, cfg, train=True), plain)
    assert prepare_batch(images, cfg.model_copy(update={"input_size": 64})).shape == (16, 3, 64, 64)


def test_cutout_zeroes_one_square_per_image_clipped_at_the_border():
    x = torch.randn(64, 3, 12, 12) + 5.0  # no pixel is 0 before
    out = cutout(x, 4, generator=torch.Generator().manual_seed(0))
    holes = out[:, 0] == 0
    assert torch.equal(holes[:, None].expand_as(x), out == 0)  # every channel of a pixel, or none
    assert torch.equal(out[~holes[:, None].expand_as(x)], x[~holes[:, None].expand_as(x)])
    for hole in holes:
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert 1 <= len(rows) <= 4 and 1 <= len(cols) <= 4
        assert hole.sum() == len(rows) * len(cols)  # one rectangle: the square, cut by the border
        assert torch.equal(rows, torch.arange(rows[0], rows[0] + len(rows)))
        assert torch.equal(cols, torch.arange(cols[0], cols[0] + len(cols)))
    assert (holes.flatten(1).sum(1) == 16).float().mean() > 0.3  # many squares lie whole inside
    assert len({tuple(h.nonzero()[0].tolist()) for h in holes}) > 10  # a fresh place per image


def test_prepare_batch_cuts_out_only_for_training():
    cfg = ClassifyData(crop_padding=0, flip=False, cutout=8)
    images = torch.full((16, 32, 32, 3), 200, dtype=torch.uint8)
    assert (prepare_batch(images, cfg) != 0).all()
    zeros = (prepare_batch(images, cfg, train=True) == 0).all(1).flatten(1).sum(1)
    assert ((zeros > 0) & (zeros <= 64)).all()


def test_resize_to_the_model_input():
    assert resize(torch.randn(1, 3, 32, 32), 64).shape == (1, 3, 64, 64)
    x = torch.randn(1, 3, 32, 32)
    assert resize(x, None) is x


def _batches(**kw):
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 2, 2, 3)
    return TensorBatches(images, torch.arange(10), batch_size=4, **kw)


def test_an_epoch_visits_every_sample_once():
    seen = torch.cat([y for _, y in _batches(shuffle=True)])
    assert sorted(seen.tolist()) == list(range(10))


def test_images_and_labels_stay_paired():
    for x, y in _batches(shuffle=True):
        assert torch.equal(x[:, 0, 0, 0].long(), y)


def test_shuffle_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        batches = _batches(shuffle=True, seed=seed)
        batches.set_epoch(epoch)
        return [y.tolist() for _, y in batches]

    assert order(1, 3) == order(1, 3)
    assert order(1, 3) != order(1, 4)
    assert order(1, 3) != order(2, 3)


def test_drop_last_and_length():
    assert len(_batches()) == 3 and len(_batches(drop_last=True)) == 2
    assert [len(y) for _, y in _batches(drop_last=True)] == [4, 4]


def test_the_plan_is_begun_with_the_steps_each_process_takes():
    """``steps_per_epoch`` (which a fit begins its plan with, before any loader exists) is the length of every
    process's training batches, whatever the set's size, the batch and the processes."""
    from types import SimpleNamespace

    from dlcv.data.batches import InMemoryData, Split

    for n, batch, world in ((10, 4, 1), (10, 4, 3), (7, 8, 2), (64, 16, 4), (5, 4, 8), (100, 32, 3)):
        data = InMemoryData(ClassifyData(batch_size=batch), seed=0)
        data.train = data.val = Split(torch.zeros(n, 2, 2, 3, dtype=torch.uint8), torch.arange(n), [""] * n, Path("."))
        for rank in range(world):
            data.trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0)
            assert len(data.train_batches(data.train.x, data.train.y)) == data.steps_per_epoch(world), (n, batch, world)


def test_processes_take_disjoint_shares():
    shares = [torch.cat([y for _, y in _batches(shuffle=True, rank=r, world_size=2)]) for r in range(2)]
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
    assert sorted(torch.cat(shares).tolist()) == list(range(10))


def test_each_epoch_of_a_trainer_gets_a_new_order():
    """A trainer stops asking once it has len() batches, so the epoch must count on at the start of a pass."""
    import lightning as L
    import torch

    from dlcv.data.batches import TensorBatches

    orders = []

    class Recording(TensorBatches):
        def __iter__(self):
            for images, labels in super().__iter__():
                orders[-1].append(int(labels[0]))
                yield images, labels

        def __len__(self):
            orders.append([])
            return super().__len__()

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return Recording(torch.randn(16, 2), torch.arange(16), 2, shuffle=True)

    L.Trainer(max_epochs=3, enable_progress_bar=False, logger=False, enable_checkpointing=False,
              enable_model_summary=False).fit(Tiny())
    passes = [o for o in orders if o]
    assert len(passes) >= 3 and len({tuple(p) for p in passes[-3:]}) == 3
