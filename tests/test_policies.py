"""The batched TrivialAugmentWide / RandAugment against torchvision's own transforms, operation by operation."""

from __future__ import annotations

import pytest
import torch

from dlcv.data.policies import BINS, apply_op, auto_augment, space_of


def torchvision_op(image: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One operation on one image as torchvision's TrivialAugmentWide applies it, through the public functionals."""
    import math

    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as TF

    nearest = v2.InterpolationMode.NEAREST
    if op.startswith("Shear"):
        angle = math.degrees(math.atan(magnitude))
        shear = [angle, 0.0] if op == "ShearX" else [0.0, angle]
        return TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=shear, interpolation=nearest,
                         center=[0, 0])
    if op.startswith("Translate"):
        shift = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        return TF.affine(image, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=nearest)
    return {
        "Identity": lambda: image,
        "Rotate": lambda: TF.rotate(image, magnitude, interpolation=nearest),
        "Brightness": lambda: TF.adjust_brightness(image, 1.0 + magnitude),
        "Color": lambda: TF.adjust_saturation(image, 1.0 + magnitude),
        "Contrast": lambda: TF.adjust_contrast(image, 1.0 + magnitude),
        "Sharpness": lambda: TF.adjust_sharpness(image, 1.0 + magnitude),
        "Posterize": lambda: TF.posterize(image, int(magnitude)),
        "Solarize": lambda: TF.solarize(image, 255.0 * magnitude),
        "AutoContrast": lambda: TF.autocontrast(image),
        "Equalize": lambda: TF.equalize(image),
    }[op]()


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


@pytest.mark.parametrize("size", [(32, 32), (33, 31), (7, 5), (128, 128)])
def test_shears_shifts_and_turns_equal_torchvision_pixel_for_pixel(size):
    h, w = size
    images = torch.randint(0, 256, (62, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    for policy in ("trivialaugment", "randaugment"):
        for op in ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"):
            table = space_of(policy)[op][0](BINS, h, w).float()
            values = torch.cat([table, -table])  # every bin, both signs
            got = apply_op(images.clone(), op, values)
            want = torch.stack([torchvision_op(x, op, float(v)) for x, v in zip(images, values)])
            assert torch.equal(got, want), (policy, op)
    turns = torch.tensor([90.0, -90.0, 180.0, 270.0, 360.0, -180.0, 45.5, 0.0])
    got = apply_op(images[:8].clone(), "Rotate", turns)
    assert torch.equal(got, torch.stack([torchvision_op(x, "Rotate", float(v)) for x, v in zip(images, turns)]))


def test_the_spaces_are_torchvisions():
    """The operations in torchvision's order (the draws depend on it) and the papers' ranges, as torchvision has
    them."""
    from dlcv.data.policies import RAND_AUGMENT, TRIVIAL_AUGMENT_WIDE

    names = ["Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
             "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"]
    assert list(TRIVIAL_AUGMENT_WIDE) == names == list(RAND_AUGMENT)
    wide = {op: m(BINS, 32, 32) for op, (m, _) in TRIVIAL_AUGMENT_WIDE.items()}
    rand = {op: m(BINS, 32, 32) for op, (m, _) in RAND_AUGMENT.items()}
    assert wide["ShearX"][-1].item() == pytest.approx(0.99) and wide["TranslateX"][-1].item() == 32.0
    assert wide["Rotate"][-1].item() == 135.0 and wide["Posterize"].tolist()[::10] == [8, 6, 4, 2]
    assert rand["ShearX"][-1].item() == pytest.approx(0.3) and rand["Rotate"][-1].item() == 30.0
    assert rand["TranslateX"][-1].item() == pytest.approx(150 / 331 * 32) and rand["Posterize"][-1].item() == 4
    assert wide["Solarize"][0].item() == 1.0 and wide["Solarize"][-1].item() == 0.0 and wide["Identity"] is None
    assert [signed for _, signed in TRIVIAL_AUGMENT_WIDE.values()] == [False] + [True] * 9 + [False] * 4


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


def test_the_policy_applies_only_when_the_plan_has_the_epochs_the_recipe_asks(capsys):
    from dlcv.data.augment import prepare_batch, uses_policy
    from dlcv.data.batches import InMemoryData
    from dlcv.plan import Plan
    from dlcv.recipes import ClassifyData

    cfg = ClassifyData(auto_augment="trivialaugment", auto_augment_min_epochs=50)
    assert not uses_policy(cfg, 30.0) and uses_policy(cfg, 50.0) and uses_policy(cfg, None)
    assert not uses_policy(cfg.model_copy(update={"auto_augment": "none"}), 80.0)
    assert uses_policy(cfg.model_copy(update={"auto_augment_min_epochs": 0}), 1.0)

    plan = Plan()
    data = InMemoryData(cfg, seed=0, plan=plan)
    assert data.plan.epochs is None  # the fit has not begun the plan
    plan.begin(100, 80)
    assert data.plan.epochs == 80.0
    plan.total_steps = 3000  # a time budget's re-plan: the data sees it
    assert data.plan.epochs == 30.0

    images = torch.randint(0, 256, (64, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(4)
    short = prepare_batch(images, cfg, train=True, planned_epochs=30.0)
    torch.manual_seed(4)
    assert torch.equal(short, prepare_batch(images, cfg.model_copy(update={"auto_augment": "none"}), train=True))
    torch.manual_seed(4)
    assert not torch.equal(short, prepare_batch(images, cfg, train=True, planned_epochs=80.0))

    from dlcv.data.batches import ClassificationData

    data = ClassificationData("unused", cfg, seed=0)
    for on, planned in ((True, None), (True, 80.0), (False, 30.0), (False, 29.0)):
        data._say_policy(on, planned)
    assert capsys.readouterr().out.splitlines() == [
        "data.auto_augment trivialaugment: on (the plan: not yet made; on from 50 epochs)",
        "data.auto_augment trivialaugment: off (the plan: 30.0 epochs; on from 50 epochs)"]
