"""Every model family a shipped recipe trains, exported to plain torch (``dlcv.export``): the largest difference
between the plain model's outputs and the model's own, here (this venv's torch) and under another interpreter (by
default Debian's /usr/bin/python3 with python3-torch, the grading machine's stand-in), and the export's time.

Usage: python benchmarks/export_families.py [--python /usr/bin/python3] [--work /tmp/export_families]
Each family is built from its shipped recipe's model section with random weights (the arithmetic is the
architecture's), traced at the recipe's input size and a batch of 4.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import header

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from dlcv.config import load_recipe  # noqa: E402
from dlcv.export import plain_source  # noqa: E402
from dlcv.models.registry import create_model  # noqa: E402
from dlcv.recipes import RECIPES  # noqa: E402

FAMILIES = {  # recipe -> the input side it is traced at
    "configs/p1/model_a_cpu.yaml": 32, "configs/p1/model_a.yaml": 32, "configs/p1/model_b_cpu.yaml": 128,
    "configs/p1/model_b.yaml": 224, "configs/seg/cpu.yaml": 320, "configs/seg/gpu.yaml": 512,
    "configs/seg/fcn32s.yaml": 512, "configs/seg/deeplabv3.yaml": 512, "configs/ssl/finetune_cpu.yaml": 32,
    "configs/ssl/finetune.yaml": 128,
}
CHECK = """
import importlib.util, json, sys, torch
folder = sys.argv[1]
out = {}
for name in json.loads(sys.argv[2]):
    spec = importlib.util.spec_from_file_location(name, f"{folder}/{name}_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(torch.load(f"{folder}/{name}.pth", map_location="cpu"), strict=True)
    x, y = torch.load(f"{folder}/{name}_io.pt")
    with torch.no_grad():
        out[name] = (net.eval()(x) - y).abs().max().item()
print(json.dumps({"torch": torch.__version__, "diff": out}))
"""


def _onnx(model, x, path) -> str:
    """The ONNX export's largest difference from the model (onnxruntime, at the batch traced and at one image)."""
    from dlcv.errors import DlcvError
    from dlcv.export import _onnx as export_onnx

    try:
        return f"{export_onnx(model, x, path):.2e}"
    except DlcvError as exc:
        return f"refused ({exc})"


def main() -> None:
    header()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="the other interpreter (torch, no dlcv)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/export_families"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    names = []
    for config, side in FAMILIES.items():
        kind = "segment" if "/seg/" in config else "classify"
        recipe = load_recipe(RECIPES[kind], REPO / config)
        model_args = {k: v for k, v in recipe.model.args.items() if k not in ("weights", "backbone_weights")}
        torch.manual_seed(0)
        model = create_model(recipe.model.name, num_classes=7 if kind == "segment" else 50, kind=kind,
                             **model_args).eval()
        x = torch.randn(4, 3, side, side)
        start = time.perf_counter()
        source, state, any_size, _ = plain_source(model, x)
        seconds = time.perf_counter() - start
        name = Path(config).stem + ("_seg" if kind == "segment" else "")
        (args.work / f"{name}_model.py").write_text(source)
        torch.save(state, args.work / f"{name}.pth")
        with torch.no_grad():
            y = model(x)
            y = y["out"] if isinstance(y, dict) else y
        torch.save((x, y), args.work / f"{name}_io.pt")
        spec = __import__("importlib.util").util.spec_from_file_location(name, args.work / f"{name}_model.py")
        module = __import__("importlib.util").util.module_from_spec(spec)
        spec.loader.exec_module(module)
        net = module.Net()
        net.load_state_dict(state, strict=True)
        with torch.no_grad():
            here = (net.eval()(x) - y).abs().max().item()
        names.append(name)
        onnx = _onnx(model, x, args.work / f"{name}.onnx")
        print(f"{config}: {recipe.model.name} {recipe.model.args.get('arch', recipe.model.args.get('encoder', ''))} "
              f"at {side}px: {len(source.splitlines())} lines, {sum(v.numel() for v in state.values()):,} weights, "
              f"any size {any_size}, export {seconds:.1f} s, max difference here {here:.2e}, ONNX {onnx}",
              flush=True)
    done = subprocess.run([args.python, "-c", CHECK, str(args.work), json.dumps(names)], capture_output=True,
                          text=True, check=False)
    if done.returncode:
        print(f"{args.python}: failed: {done.stderr[-2000:]}")
        return
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name, diff in result["diff"].items():
        print(f"{name}: max difference under {args.python} (torch {result['torch']}): {diff:.2e}")


if __name__ == "__main__":
    main()
