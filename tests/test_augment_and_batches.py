"""Batched augmentation on the device, and batches straight from in-memory tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlcv.data.augment import augment, random_crop, random_flip, resize, to_float
from dlcv.data.batches import TensorBatches


def test_to_float_normalises_and_is_channels_last():
    images = torch.full((2, 4, 4, 3), 255, dtype=torch.uint8)
    x = to_float(images, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])
    assert x.shape == (2, 3, 4, 4) and torch.allclose(x, torch.full_like(x, 2.0))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_random_crop_is_a_window_of_the_padded_image():
    x = torch.randn(8, 3, 8, 8)
    out = random_crop(x, padding=2, generator=torch.Generator().manual_seed(0))
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(8):
        windows = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_random_crop_without_padding_changes_nothing():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(random_crop(x, 0), x)


def test_random_flip_mirrors_some_images_and_keeps_the_rest():
    x = torch.randn(64, 3, 5, 5)
    out = random_flip(x, generator=torch.Generator().manual_seed(1))
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_augment_keeps_shape_and_channels_last():
    x = to_float(torch.randint(0, 255, (4, 32, 32, 3), dtype=torch.uint8), [0.5] * 3, [0.5] * 3)
    out = augment(x, crop_padding=4, flip=True)
    assert out.shape == x.shape and out.is_contiguous(memory_format=torch.channels_last)


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


def test_processes_take_disjoint_shares():
    shares = [torch.cat([y for _, y in _batches(shuffle=True, rank=r, world_size=2)]) for r in range(2)]
    assert not set(shares[0].tolist()) & set(shares[1].tolist())
    assert sorted(torch.cat(shares).tolist()) == list(range(10))
