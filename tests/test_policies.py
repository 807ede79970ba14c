"""The batched TrivialAugmentWide / RandAugment against torchvision's own transforms, operation by operation."""

from __future__ import annotations

import pytest
import torch

from dlcv.data.policies import BINS, apply_op, auto_augment, space_of


def torchvision_op(image: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    from torchvision.transforms import v2

    transform = v2.TrivialAugmentWide()
    return transform._apply_image_or_video_transform(image, op, magnitude, interpolation=transform.interpolation,
                                                     fill=transform._fill)


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
def test_each_operation_gives_each_image_what_torchvision_gives_it(policy):
    images = torch.randint(0, 256, (12, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[0] = 7  # a flat image (contrast, autocontrast and equalize have their edge cases there)
    bins = torch.tensor([0, 3, 7, 10, 14, 15, 19, 20, 24, 27, 29, BINS - 1])
    for op, (magnitudes, signed) in space_of(policy).items():
        table = magnitudes(BINS, 32, 32)
        values = torch.zeros(12) if table is None else table[bins].float()
        if signed:
            values = values * torch.tensor([1.0, -1.0] * 6)
        got = apply_op(images.clone(), op, values)
        want = torch.stack([torchvision_op(x, op, float(v)) for x, v in zip(images, values)])
        difference = (got.int() - want.int()).abs()
        assert difference.max() <= 1, op  # a blend's rounding may fall the other way by one
        assert (difference > 0).float().mean() < 0.01, op


def test_auto_augment_draws_per_image_and_repeats_under_the_same_seed():
    images = torch.randint(0, 256, (64, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    first = auto_augment(images, "trivialaugment")
    torch.manual_seed(5)
    again = auto_augment(images, "trivialaugment")
    assert torch.equal(first, again) and first.shape == images.shape and first.dtype == torch.uint8
    changed = (first != images).flatten(1).any(1)
    assert 0.5 < changed.float().mean() < 1.0  # most images changed; Identity (and no-op draws) leave some
    assert not torch.equal(auto_augment(images, "randaugment", num_ops=2, magnitude=9), images)


@pytest.mark.parametrize("policy", ["trivialaugment", "randaugment"])
def test_a_share_of_the_images_takes_the_policy_and_the_rest_is_left_as_it_is(policy):
    images = torch.randint(0, 256, (200, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(auto_augment(images, policy, share=0.0), images)
    changed = (auto_augment(images, policy, share=0.25) != images).flatten(1).any(1).float().mean()
    full = (auto_augment(images, policy) != images).flatten(1).any(1).float().mean()
    assert 0.1 < changed < 0.35 and full > 0.6


def test_the_ramp_gives_the_policy_to_a_share_that_follows_the_planned_steps():
    from types import SimpleNamespace

    from dlcv.data.augment import prepare_batch
    from dlcv.data.batches import InMemoryData
    from dlcv.recipes import classify_defaults
    from dlcv.tasks.optim import Horizon

    data = InMemoryData({}, seed=0)
    trainer = SimpleNamespace(lightning_module=SimpleNamespace(horizon=Horizon(400, 100)), global_step=100)
    data.trainer = trainer
    assert data.progress == 0.25
    trainer.global_step = 500  # past the plan (a budget re-planned it shorter)
    assert data.progress == 1.0
    trainer.lightning_module.horizon = None
    assert data.progress == 1.0

    cfg = {**classify_defaults()["data"], "auto_augment": "trivialaugment", "auto_augment_ramp": True,
           "crop_padding": 0, "flip": False}
    images = torch.randint(0, 256, (64, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    assert torch.equal(prepare_batch(images, cfg, train=True, progress=0.0), prepare_batch(images, cfg))
    torch.manual_seed(4)
    ramped = prepare_batch(images, cfg, train=True, progress=1.0)
    torch.manual_seed(4)
    assert torch.equal(ramped, prepare_batch(images, {**cfg, "auto_augment_ramp": False}, train=True))
