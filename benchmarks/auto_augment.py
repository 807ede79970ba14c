"""data.auto_augment: torchvision's transform called per image (the old way) and kornia's batched policies
against dlcv's batched policies (``dlcv.data.policies.auto_augment``), milliseconds per batch of uint8 images
on this machine's device (the GPU when there is one); kornia's time includes the uint8 -> float it needs.

Usage: python benchmarks/auto_augment.py [--batch 256] [--sizes 32,128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import cpu, header
from torchvision.transforms import v2

from dlcv.data.policies import auto_augment


def per_image(images: torch.Tensor, transform) -> torch.Tensor:
    chw = images.permute(0, 3, 1, 2)
    return torch.stack([transform(image) for image in chw]).permute(0, 2, 3, 1).contiguous()


def milliseconds(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats * 1000


def arguments(description: str, sizes: str) -> tuple[argparse.Namespace, torch.device]:
    """``--batch``, ``--sizes`` (default ``sizes``) and ``--repeats``, and the device, printed with the setting."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default=sizes)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu()
    print(f"device: {name}; torch {torch.__version__}; {torch.get_num_threads()} threads; batch {args.batch}")
    return args, device


def main() -> None:
    header()
    args, device = arguments(__doc__.splitlines()[0], "32,128")
    batched = kornia_policies()
    print("| policy | image side | per image (torchvision) ms | batched (kornia) ms | batched (dlcv) ms | "
          "dlcv's speed-up over torchvision / kornia |")
    print("|---|---:|---:|---:|---:|---:|")
    for side in (int(s) for s in args.sizes.split(",")):
        images = torch.randint(0, 256, (args.batch, side, side, 3), dtype=torch.uint8, device=device)
        for policy, transform in (("trivialaugment", v2.TrivialAugmentWide()), ("randaugment", v2.RandAugment())):
            old = milliseconds(lambda x=images, t=transform: per_image(x, t), args.repeats, device)
            new = milliseconds(lambda x=images, p=policy: auto_augment(x, p), args.repeats, device)
            other = (milliseconds(lambda x=images, k=batched[policy]: k(x.permute(0, 3, 1, 2).float() / 255),
                                  args.repeats, device) if batched else float("nan"))
            speedups = f"{old / new:.1f}x / {other / new:.1f}x"
            print(f"| {policy} | {side} | {old:.1f} | {other:.1f} | {new:.1f} | {speedups} |", flush=True)


def kornia_policies() -> dict | None:
    """kornia's batched TrivialAugment and RandAugment (float images in [0, 1]), or None without kornia."""
    try:
        from kornia.augmentation.auto import RandAugment, TrivialAugment
    except ImportError:
        print("(kornia is not installed: its column is nan; pip install kornia)")
        return None
    return {"trivialaugment": TrivialAugment(), "randaugment": RandAugment(n=2, m=9)}


if __name__ == "__main__":
    main()
