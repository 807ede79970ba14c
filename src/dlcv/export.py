"""Export a trained checkpoint as plain torch code and weights (``dlcv.plain_source``), or as ONNX."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import torch
import torch.fx

from dlcv.checkpoints import load_predictor
from dlcv.errors import DlcvError
from dlcv.files import atomic_path
from dlcv.io import check_output_file, record_output_file, save_torch, staged_folder
from dlcv.models.weights import load_state_file
from dlcv.plain_source import DEFAULT_TORCH, batch_generic, model_outputs, other_batch, plain_source, trace
from dlcv.recipes import RECIPES
from dlcv.torch_versions import version


# --- a checkpoint, exported--------------------------------------------------------------------------------
def exported_tasks() -> tuple[str, ...]:
    """The tasks whose checkpoints export: those whose recipe gives the batch to trace at (``TRACE_BATCH``)."""
    return tuple(dict.fromkeys(kind.model_fields["task"].default for kind in RECIPES.values() if kind.TRACE_BATCH))


def checkpoint_model(path, task: str | None = None):
    """Load a dlcv classification or segmentation checkpoint for export: ``(model, recipe, example)``.

    The model is in evaluation mode; ``example`` is a seeded random float32 input of the recipe's ``TRACE_BATCH``
    images, (TRACE_BATCH, 3, S, S) at the side S that ``predict`` gives. ``task``: the one it must be of (None: any
    task that exports).
    """
    model, recipe = load_predictor(path, task or exported_tasks())
    side = recipe.input_side()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(recipe.TRACE_BATCH, 3, side, side, generator=generator)
    return model.eval(), recipe, example


def export_checkpoint(checkpoint, fmt: str, output, overwrite: bool = False, torch_version: str | None = None
                      ) -> dict:
    """``dlcv export``: write a checkpoint's model as plain torch or ONNX, checked against the checkpoint.

    Plain torch is a folder of ``model.py`` and ``weights.pth``; ONNX is one file. The export is checked against the
    checkpoint's outputs at two batches where it takes any batch, else at the one it holds.

    Args:
        checkpoint: a dlcv classification or segmentation checkpoint.
        fmt: ``onnx``, or else plain torch.
        output: the folder (plain torch) or the ``.onnx`` file to write.
        overwrite: replace an earlier output (``--overwrite``).
        torch_version: the torch the code must run on; None: ``DEFAULT_TORCH``.

    Returns:
        ``output``, the largest ``difference`` from the checkpoint's outputs, ``any_size``, ``side`` (the input side
        traced at, in pixels), ``batch`` (the one batch the export takes, or None for any) and ``torch`` (the version
        the code is written for).

    Raises:
        DlcvError: the output is refused or not written, an ONNX file's name does not end in ``.onnx``, the torch
            version is not one the code can be written for, the checkpoint is unreadable, or the model does not
            export (``plain_source``, ``write_onnx``).
    """
    if fmt == "onnx":
        output = check_output_file(output, overwrite, inputs=(checkpoint,))
        if output.suffix.lower() != ".onnx":  # a runtime opens it by its name
            raise DlcvError(f"--output {output}: an ONNX model's file name ends in .onnx")
    torch_version = torch_version or DEFAULT_TORCH
    version(torch_version)  # a bad version is refused before any work
    model, recipe, example = checkpoint_model(checkpoint)
    result = {"output": output, "side": example.shape[-1], "torch": torch_version}
    if fmt == "onnx":
        difference, any_batch = write_onnx(model, example, output, torch_version)
        record_output_file(output)
        return {**result, "difference": difference, "any_size": False, "batch": None if any_batch else len(example)}
    source, state, any_size, any_batch = plain_source(model, example, torch_version)
    with staged_folder(output, overwrite, inputs=(checkpoint,), kind="plain torch model") as staging:
        (staging / "model.py").write_text(source)
        save_torch(state, staging / "weights.pth")
        difference = _plain_difference(staging, model, _checked_batches(example, any_batch))
    return {**result, "difference": difference, "any_size": any_size, "batch": None if any_batch else len(example)}


def _checked_batches(example: torch.Tensor, any_batch: bool) -> list[torch.Tensor]:
    """The inputs an export is checked on: ``example``, and a batch of another size where it takes any batch."""
    return [example, other_batch(example, 3 if len(example) != 3 else 1)] if any_batch else [example]


def _plain_difference(folder, model, inputs: list[torch.Tensor]) -> float:
    """The largest difference between the plain model in ``folder`` and ``model`` on each of ``inputs``."""
    spec = importlib.util.spec_from_file_location("dlcv_plain_model", folder / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    net.load_state_dict(load_state_file(folder / "weights.pth"), strict=True)
    return max((model_outputs(net.eval(), x) - model_outputs(model, x)).abs().max().item() for x in inputs)


def write_onnx(model, example, output, torch_version: str) -> tuple[float, bool]:
    """Write the traced model to ``output`` as ONNX (opset 17), checked by onnxruntime against ``model``.

    The batch is dynamic where the trace takes any batch.

    Returns:
        ``(difference, any_batch)``: onnxruntime's largest difference from ``model`` (at two batches, else at the
        one), and whether the batch is dynamic.

    Raises:
        DlcvError: onnxruntime is not installed, the export or its check failed, or the outputs differ by more than
            1e-4; nothing is written then.
    """
    try:
        import onnxruntime
    except ImportError:
        raise DlcvError("--format onnx needs onnxruntime (pip install onnxruntime onnx)") from None
    target = version(torch_version)
    traced = trace(model, example, target)
    any_batch = batch_generic(model, example, traced, target)
    dynamic = {"images": {0: "batch"}, "scores": {0: "batch"}} if any_batch else None
    with atomic_path(output) as tmp:
        try:
            with warnings.catch_warnings():  # the exporter's notes on shape inference are not the user's to read
                warnings.simplefilter("ignore")
                torch.onnx.export(traced, (example,), str(tmp), input_names=["images"], output_names=["scores"],
                                  dynamic_axes=dynamic, opset_version=17, dynamo=False)
            session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            worst = max(float(np.abs(session.run(None, {"images": x.numpy()})[0]
                                     - model_outputs(model, x).numpy()).max())
                        for x in _checked_batches(example, any_batch))
        except Exception as exc:  # noqa: BLE001 -- the exporter and onnxruntime fail in many ways: one line each
            raise DlcvError(f"{output}: the ONNX export failed ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0][:200] if str(exc).strip() else 'no message'}); "
                            "not written (--format torch may hold)") from None
        if worst > 1e-4:
            raise DlcvError(f"{output}: onnxruntime's outputs differ from the checkpoint's by {worst:.2e} (over "
                            "1e-4); not written")
    return worst, any_batch
