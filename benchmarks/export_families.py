"""Every model family a shipped recipe trains, and the families of the best public solutions that no recipe ships
(ViT, BEiT, ConvNeXt, Swin, RegNet, Segformer), exported to plain torch for the course's torch (``dlcv.export``):
whether the code takes any batch, the largest difference between the plain model's outputs and the model's own at
batches of 1 and 3 under another interpreter (by default Debian's /usr/bin/python3 with python3-torch 1.13, the
grading machine's stand-in), the ONNX export's, and the export's time.

Usage: python benchmarks/export_families.py [--python /usr/bin/python3] [--work /tmp/export_families]
    [--torch 1.12] [--only NAME,...]
Each family is built at full size with random weights (the arithmetic is the architecture's), its batch norms
calibrated on random inputs, traced at its recipe's input size and a batch of 4. The test suite runs the same
families small (``families(small=True)``: tests/test_export.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import header

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dlcv.config import load_recipe  # noqa: E402
from dlcv.errors import DlcvError  # noqa: E402
from dlcv.export import write_onnx  # noqa: E402
from dlcv.models.registry import create_model  # noqa: E402
from dlcv.plain_source import plain_source  # noqa: E402
from dlcv.recipes import RECIPES  # noqa: E402

SEG_SIDE = {"cpu": 320}  # a segmentation recipe's side, where it is not the course's 512
EXTRA = {  # name -> (library, arguments, side, kind)
    "vit_small": ("timm", {"model_name": "vit_small_patch16_224"}, 224, "classify"),
    "beit_base": ("timm", {"model_name": "beit_base_patch16_224"}, 224, "classify"),
    "convnext_tiny": ("timm", {"model_name": "convnext_tiny"}, 224, "classify"),
    "swin_tiny": ("timm", {"model_name": "swin_tiny_patch4_window7_224"}, 224, "classify"),
    "regnety_016": ("timm", {"model_name": "regnety_016"}, 224, "classify"),
    "segformer_b2": ("smp", {"arch": "Segformer", "encoder_name": "mit_b2", "encoder_weights": None}, 512,
                     "segment"),
}
# Small: the largest shipped variants as a smaller sibling of the same code, every recipe's model at 64 pixels (at
# most: the course's 32 where its recipe says so), and the extra families in their smallest forms.
SMALLER = {"tf_efficientnetv2_m": "tf_efficientnetv2_b0", "tf_efficientnetv2_s": "tf_efficientnetv2_b0",
           "resnet101": "resnet18", "resnet50": "resnet18", "tf_efficientnet_lite2": "tf_efficientnet_lite0"}
STANDS_FOR = {"p1/r3_model_b": "beit"}  # small: a recipe whose family timm has at one size only, by its one block
EXTRA_SMALL = {
    "vit": ("timm", {"model_name": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4}, 32, "classify"),
    "beit": ("timm", {"model_name": "beit_base_patch16_224", "img_size": 32, "patch_size": 4, "depth": 1,
                      "embed_dim": 48, "num_heads": 2}, 32, "classify"),
    "convnext": ("timm", {"model_name": "convnext_atto"}, 32, "classify"),
    "swin": ("timm", {"model_name": "swin_tiny_patch4_window7_224", "img_size": 32, "window_size": 4, "embed_dim": 24,
                      "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 2)}, 32, "classify"),
    "regnet": ("timm", {"model_name": "regnetx_002"}, 32, "classify"),
    "segformer": ("smp", {"arch": "Segformer", "encoder_name": "mit_b0", "encoder_weights": None}, 64, "segment"),
}
CHECK = """
import importlib.util, json, sys, torch
folder = sys.argv[1]
spec = importlib.util.spec_from_file_location("family_model", folder + "/model.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
net = module.Net()
net.load_state_dict(torch.load(folder + "/weights.pth", map_location="cpu"), strict=True)
out = []
with torch.no_grad():
    for x, y in torch.load(folder + "/io.pt"):
        got = net.eval()(x)
        out.append([len(x), (got - y).abs().max().item(), bool((got.argmax(1) == y.argmax(1)).all())])
print(json.dumps({"torch": torch.__version__, "checks": out}))
"""


def families(only: set[str] | None = None, small: bool = False):
    """``(name, kind, build, side)``: every shipped recipe's model, then ``EXTRA`` (``small``: ``SMALLER``,
    ``STANDS_FOR`` and ``EXTRA_SMALL``); ``build()`` makes it with random weights."""
    import segmentation_models_pytorch as smp
    import timm

    smaller = SMALLER if small else {}
    found = []
    for config in sorted([*(REPO / "configs" / "p1").glob("*.yaml"), *(REPO / "configs" / "seg").glob("*.yaml"),
                          *(REPO / "configs" / "ssl").glob("finetune*.yaml")]):
        kind = "segment" if config.parent.name == "seg" else "classify"
        if small and f"{config.parent.name}/{config.stem}" in STANDS_FOR:
            continue
        recipe = load_recipe(RECIPES[kind], config)
        args = {k: smaller.get(v, v) if isinstance(v, str) else v for k, v in recipe.model.args.items()
                if k not in ("weights", "backbone_weights", "encoder_weights")}
        if args.get("encoder", "").removeprefix("tu-") in smaller:
            args["encoder"] = "tu-" + smaller[args["encoder"].removeprefix("tu-")]
        full = SEG_SIDE.get(config.stem, 512) if kind == "segment" else recipe.input_side()
        side = min(64, full) if small else full
        found.append((f"{config.parent.name}/{config.stem}", kind, lambda n=recipe.model.name, a=args, k=kind:
                      create_model(n, num_classes=7 if k == "segment" else 50, task=k, **a), side))
    for name, (library, args, side, kind) in (EXTRA_SMALL if small else EXTRA).items():
        build = (lambda a=args: timm.create_model(**a, num_classes=50)) if library == "timm" else (
            lambda a=args: smp.create_model(**a, classes=7))
        found.append((name, kind, build, side))
    return [f for f in found if only is None or f[0] in only]


def calibrated(model: torch.nn.Module, side: int) -> torch.nn.Module:
    """``model`` in evaluation mode, its batch norms' statistics those of random inputs: random weights with the
    initial statistics let activations grow layer by layer (1e10 after EfficientNetV2-M), which measures nothing."""
    norms = [m for m in model.modules() if hasattr(m, "running_mean") and hasattr(m, "momentum")]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, side, side))
    return model.eval()


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="the other interpreter (torch, no dlcv)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/export_families"))
    parser.add_argument("--torch", default="1.12", help="the torch the code is written for")
    parser.add_argument("--only", help="comma-separated family names (as printed)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for name, kind, build, side in families(set(args.only.split(",")) if args.only else None):
        torch.manual_seed(0)
        model = calibrated(build(), side)
        x = torch.randn(4, 3, side, side)
        start = time.perf_counter()
        try:
            source, state, any_size, any_batch = plain_source(model, x, args.torch)
        except DlcvError as exc:
            print(f"{name}: refused: {exc}", flush=True)
            continue
        seconds = time.perf_counter() - start
        folder = args.work / name.replace("/", "_")
        folder.mkdir(exist_ok=True)
        (folder / "model.py").write_text(source)
        torch.save(state, folder / "weights.pth")
        with torch.no_grad():
            torch.save([(x[:n], model(x[:n])) for n in (1, 3)], folder / "io.pt")
        try:
            onnx = "{:.2e}".format(write_onnx(model, x, folder / "model.onnx", args.torch)[0])
        except DlcvError as exc:
            onnx = f"refused ({exc})"
        done = subprocess.run([args.python, "-c", CHECK, str(folder)], capture_output=True, text=True, check=False)
        if done.returncode:
            checks = f"failed under {args.python}: {done.stderr.strip().splitlines()[-1][:200]}"
        else:
            result = json.loads(done.stdout.strip().splitlines()[-1])
            checks = f"under torch {result['torch']}: " + ", ".join(
                f"batch {n} {diff:.2e}{'' if same else ' (labels differ)'}" for n, diff, same in result["checks"])
        print(f"{name}: {type(model).__name__} at {side}px, {sum(v.numel() for v in state.values()):,} weights, any "
              f"batch {any_batch}, any size {any_size}, export {seconds:.1f} s; {checks}; ONNX {onnx}", flush=True)
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
