"""BYOL's two views of a batch: lightly's transforms per PIL image (the library's way) and kornia's batched
augmentations against dlcv's batched views (``dlcv.data.ssl_views.byol_views``), milliseconds per batch of uint8
images on this machine's device (the GPU when there is one); every way starts from the uint8 batch and ends with
two normalised float batches.

Usage: python benchmarks/byol_views.py [--batch 256] [--sizes 32:32,96:128] [--repeats 5]
(``--sizes``: image side:view side pairs; 32:32 is the CPU recipe's, 96:128 near the ResNet50 recipe's).
"""

from __future__ import annotations

import torch
from auto_augment import (  # this folder's: the same setting and timing as the policies'
    arguments,
    milliseconds,
)
from machine import header
from PIL import Image

from dlcv.data.ssl_views import byol_views
from dlcv.recipes import IMAGENET_MEAN, IMAGENET_STD, Views


def lightly_views(size: int, cfg: Views):
    """The two views as lightly's BYOLView1Transform / BYOLView2Transform make them, one PIL image at a time."""
    from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

    common = {"input_size": size, "min_scale": cfg.min_scale, "hf_prob": cfg.hflip, "cj_prob": cfg.jitter_prob,
              "cj_bright": cfg.brightness, "cj_contrast": cfg.contrast, "cj_sat": cfg.saturation, "cj_hue": cfg.hue,
              "random_gray_scale": cfg.grayscale}
    one = BYOLView1Transform(**common, gaussian_blur=cfg.blur[0], solarization_prob=cfg.solarize[0])
    two = BYOLView2Transform(**common, gaussian_blur=cfg.blur[1], solarization_prob=cfg.solarize[1])

    def run(images: torch.Tensor):
        pil = [Image.fromarray(image) for image in images.cpu().numpy()]
        return torch.stack([one(p) for p in pil]), torch.stack([two(p) for p in pil])

    return run


def kornia_views(size: int, cfg: Views, device: torch.device):
    """The same two views from kornia's batched augmentations (per-sample parameters, one call per view)."""
    try:
        import kornia.augmentation as K
    except ImportError:
        print("(kornia is not installed: its column is nan; pip install kornia)")
        return None

    def view(blur: float, solarize: float):
        return K.AugmentationSequential(
            K.RandomResizedCrop((size, size), scale=(cfg.min_scale, 1.0)), K.RandomHorizontalFlip(p=cfg.hflip),
            K.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue, p=cfg.jitter_prob),
            K.RandomGrayscale(p=cfg.grayscale),
            K.RandomGaussianBlur((size // 10 * 2 + 1,) * 2, (0.1 * size / 224, 2.0 * size / 224), p=blur),
            K.RandomSolarize(0.0, 0.0, p=solarize) if solarize else K.RandomSolarize(p=0.0),
            K.Normalize(torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD))).to(device)

    one, two = view(cfg.blur[0], cfg.solarize[0]), view(cfg.blur[1], cfg.solarize[1])

    def run(images: torch.Tensor):
        x = images.permute(0, 3, 1, 2).float() / 255
        return one(x), two(x)

    return run


def main() -> None:
    header()
    args, device = arguments(__doc__.splitlines()[0], "32:32,96:128")
    print("| image side | view side | per image (lightly) ms | batched (kornia) ms | batched (dlcv) ms | "
          "dlcv's speed-up over lightly / kornia |")
    print("|---:|---:|---:|---:|---:|---:|")
    for pair in args.sizes.split(","):
        side, size = (int(v) for v in pair.split(":"))
        cfg = Views(size=size)
        images = torch.randint(0, 256, (args.batch, side, side, 3), dtype=torch.uint8, device=device)
        ours = milliseconds(lambda: byol_views(images, cfg, IMAGENET_MEAN, IMAGENET_STD), args.repeats, device)
        lightly = milliseconds(lambda run=lightly_views(size, cfg): run(images), args.repeats, device)
        batched = kornia_views(size, cfg, device)
        other = milliseconds(lambda: batched(images), args.repeats, device) if batched else float("nan")
        print(f"| {side} | {size} | {lightly:.1f} | {other:.1f} | {ours:.1f} | "
              f"{lightly / ours:.1f}x / {other / ours:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
