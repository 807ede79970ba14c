"""DLCV HW1 prediction as the course runs it, written by `dlcv handin`: plain torch, numpy and Pillow.

The model class and state_dict beside this file (``CONFIG``) predict as the source checkpoint's ``dlcv ... predict``:
inputs found and decoded by dlcv's own ``files.py``, views averaged by its ``tta.py`` (both beside this file), in
float32 unless the folder was written with ``dlcv handin --autocast``.

Outputs keep dlcv's rules: never an input, one of this folder's files or a file this script did not write; each is
written to a temporary name and renamed. Bad input is refused before torch is imported.

Needs Python 3.6 or later and torch 1.4 or later (1.10 with --autocast; 1.11 where a segmenter resizes its tiles on a
GPU).
"""
import argparse
import contextlib
import csv
import functools
import importlib
import os
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
from files import (
    MANIFEST,
    DlcvError,
    SizeMismatch,
    atomic_path,
    atomic_write,
    check_not_an_input,
    check_not_special,
    check_one_size,
    check_utf8_name,
    current_umask,
    decode_image,
    decode_resized,
    file_hashes,
    list_images,
    listed_hashes,
    odd_size_message,
    office_rows,
    read_manifest,
    record_written,
    resolved_path,
    satellite_tiles,
    unchanged,
    write_error,
    write_manifest,
    written_by_dlcv,
)
from PIL import Image

CONFIG = {}  # filled in by dlcv handin: the task, the model, its input and its test-time augmentation
HERE = Path(os.path.abspath(__file__)).parent
MASKS = "set of predicted masks"  # the kind of folder dlcv's segment predict writes, as its manifest says
COLOURS = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255),
                    (0, 0, 0)], dtype=np.uint8)  # the course's mask colours, classes 0-6


# --- the model ---------------------------------------------------------------------------------------------
def load_model(device):
    """The plain model with its weights, on ``device``, in evaluation mode.

    Raises:
        DlcvError: the weights file is missing, or is not the one dlcv handin wrote.
    """
    import torch  # here, not at the top: bad input is refused before torch's import

    weights = HERE / CONFIG["weights"]
    if not weights.is_file():
        raise DlcvError("{} is missing: run the download script first ({})".format(weights, CONFIG["download"]))
    net = importlib.import_module(CONFIG["model"]).Net()
    try:
        state = torch.load(str(weights), map_location="cpu")
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file fails in many ways
        raise DlcvError("{}: not the weights dlcv handin wrote ({}); run the download script again".format(
            weights, str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__)) from None
    layout = getattr(torch, "channels_last", None)  # dlcv's layout (torch 1.5 on): the same kernels, the same sums
    return net.eval().to(device, memory_format=layout) if layout is not None else net.eval().to(device)


def device():
    """The GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def autocast(device):
    """The autocast context to predict under: none (float32) unless written with ``dlcv handin --autocast``.

    Then ``dlcv ... predict --autocast``'s: on a GPU its half type (bf16 where it computes bf16, unless the model
    trained in ``16-mixed``); on a CPU with bf16 instructions, bf16 for a model trained in bf16 or ``auto``.
    """
    import torch

    precision = CONFIG["precision"]
    if not CONFIG["autocast"] or precision.startswith(("32", "64")):
        return contextlib.suppress()  # nothing to suppress: a context that changes nothing, in Python 3.6 too
    if device.type == "cuda":
        bf16 = getattr(torch.cuda, "is_bf16_supported", lambda: False)() and precision != "16-mixed"
        return torch.autocast("cuda", dtype=torch.bfloat16 if bf16 else torch.float16)
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        flags = ""
    # dlcv's rule (runtime.bf16_is_native): bf16 units, and torch not held below them by ATen's or oneDNN's setting
    aten = (os.environ.get("ATEN_CPU_CAPABILITY") or "avx512").strip().lower()
    onednn = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").strip().upper()
    units = " avx512_bf16" in flags or " amx_bf16" in flags
    fast = units and aten == "avx512" and onednn in CONFIG["onednn_bf16_isas"]
    return torch.autocast("cpu", dtype=torch.bfloat16,
                          enabled=fast and (precision.startswith("bf16") or precision == "auto"))


def batch_size(device):
    """Images per batch: ``dlcv ... predict``'s on a GPU for a model of any batch, else its traced batch.

    The same batch as dlcv's gets the same kernels, which are chosen by shape, so near ties fall alike.
    """
    return CONFIG["predict_batch"] if CONFIG["any_batch"] and device.type != "cpu" else CONFIG["batch"]


def run(net, x):
    """The model's outputs on ``x``: whole where it takes any batch, else in batches of its traced size.

    The last batch is padded with zeros, and the padding's outputs are dropped.

    Raises:
        DlcvError: ``x`` is not of the height and width the model was exported for.
    """
    import torch

    size, out = CONFIG["batch"], []
    if CONFIG["side"] and tuple(x.shape[-2:]) != (CONFIG["side"], CONFIG["side"]):
        raise DlcvError("the model was exported for {0}x{0} inputs, not {1}x{2}".format(CONFIG["side"],
                                                                                        *x.shape[-2:]))
    if CONFIG["any_batch"]:
        return net(x.contiguous())
    for i in range(0, len(x), size):
        part = x[i:i + size]
        pad = size - len(part)
        if pad:
            part = torch.cat([part, part.new_zeros((pad,) + tuple(part.shape[1:]))])
        out.append(net(part.contiguous())[:size - pad])
    return torch.cat(out)


def normalise(images, device):
    """uint8 (N, H, W, 3) images -> float32 (N, 3, H, W) on ``device``, normalised as in training.

    As dlcv computes it: x * scale + shift per channel, with float32 scale 1 / (255 std) and shift -mean / std.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float()
    scale = torch.tensor([1.0 / (255.0 * s) for s in CONFIG["std"]], dtype=torch.float32, device=device)
    shift = torch.tensor([-m / s for m, s in zip(CONFIG["mean"], CONFIG["std"])], dtype=torch.float32,
                         device=device)
    return (x * scale + shift).permute(0, 3, 1, 2)


def classify(images, device):
    """The predicted label (an int) of each of uint8 (N, H, W, 3) images."""
    import torch
    import torch.nn.functional as F
    from tta import predict_logits

    net, labels, step = load_model(device), [], batch_size(device)
    with torch.no_grad(), autocast(device):
        for i in range(0, len(images), step):
            x = normalise(images[i:i + step], device)
            size = CONFIG["input_size"]
            if size and tuple(x.shape[-2:]) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            logits = predict_logits(functools.partial(run, net), x, CONFIG["tta"])
            labels.extend(logits.float().softmax(1).argmax(1).tolist())
    return labels


def segment_input(tiles, device):
    """uint8 (B, H, W, 3) tiles -> float32 (B, 3, S, S) model input at the evaluation size S, where set.

    On a CPU the tiles are resized as uint8, as dlcv does (by Pillow where torch has no uint8 resize, before 2.1); on a
    GPU as floats.
    """
    import torch
    import torch.nn.functional as F

    size = CONFIG["eval_size"]
    if size and tuple(tiles.shape[1:3]) != (size, size):
        if device.type != "cpu":
            x = normalise(tiles, device)
            return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        try:
            pixels = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2)
            tiles = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True).permute(0, 2, 3, 1).numpy()
        except (RuntimeError, TypeError, NotImplementedError):  # no uint8 resize (or no antialias) here
            tiles = np.stack([np.asarray(Image.fromarray(t).resize((size, size), Image.BILINEAR)) for t in tiles])
    return normalise(tiles, device)


# --- the inputs, read as dlcv reads them -------------------------------------------------------------------
def decode_all(files):
    """Decode ``files`` as uint8 (N, H, W, 3), all of the first one's size (as dlcv decodes a folder).

    Raises:
        DlcvError: a file is not a readable image, or is not of the size most share (naming it).
    """
    first = decode_image(files[0])
    out = np.empty((len(files),) + first.shape, dtype=np.uint8)
    out[0] = first
    try:
        for i, path in enumerate(files[1:], start=1):
            out[i] = decode_image(path, first.shape[:2])
    except SizeMismatch:  # the first file read may be the odd one: name the one that differs from most
        raise DlcvError(odd_size_message(files)) from None
    return out


# --- the outputs, kept as dlcv keeps them ------------------------------------------------------------------
def own_files():
    """This folder's own files (its scripts, code and weights), which no output may replace."""
    return [HERE / name for name in CONFIG["folder_files"]]


def check_output_file(path, inputs):
    """Check ``path`` as dlcv checks an output file, before any work, and return it as a ``Path``.

    Raises:
        DlcvError: no file name; a file where a folder on its way should be; a link, folder or device; an input or
            inside an input folder; one of this folder's files; or a file, not empty, that this script did not write.
    """
    path = Path(path)
    if not path.name or path.name in (".", ".."):
        raise DlcvError("{}: give a file name for the output".format(path))
    for parent in path.parents:  # a missing folder is made when the output is written; a file on the way is not
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise DlcvError("{}: the output folder {} is not a folder".format(path, parent))
            break
    check_not_special(path)
    check_not_special(path.parent / MANIFEST)  # the manifest that will list it: refused now, not after the work
    check_not_an_input(path, inputs)
    if resolved_path(path) in {resolved_path(p) for p in own_files()}:
        raise DlcvError("{}: is one of this hand-in folder's own files; write the output elsewhere".format(path))
    if path.exists() and path.stat().st_size and not written_by_dlcv(path):
        raise DlcvError("{}: exists and this script did not write it; give a new file name".format(path))
    return path


def make_parent(path):
    """Make the missing folders above ``path``: the course's graders may name an output folder not there.

    Raises:
        DlcvError: a folder could not be made.
    """
    try:
        os.makedirs(str(path.parent), mode=0o777, exist_ok=True)
    except OSError as exc:
        raise write_error(path.parent, exc) from None


def check_output_folder(folder, inputs, names):
    """Check the mask folder before any work, and return the masks its manifest lists as this script's, unchanged.

    It may be new, empty, or a set of masks dlcv wrote, whose listed files alone are replaced (and only as written:
    a mask edited since is the grader's); it may not be a link, a file or a device, nor be, hold or lie inside an
    input or this folder's files.

    Args:
        folder: the output folder.
        inputs: the input paths.
        names: the masks to be written.

    Returns:
        the names the manifest lists that are there as written, sorted; [] for a new or empty folder.

    Raises:
        DlcvError: the folder is refused as above, holds files this script did not write, or holds a file of a name to
            be written that its manifest does not list.
    """
    folder = Path(folder)
    check_not_special(folder, folder=True)
    check_not_an_input(folder, inputs + own_files())
    for parent in folder.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise DlcvError("{}: its parent {} is not a folder".format(folder, parent))
            break
    if not folder.is_dir() or not any(folder.iterdir()):
        return []
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != MASKS or "files" not in manifest:
        raise DlcvError("{}: holds files this script did not write; give a new or empty folder".format(folder))
    listed = listed_hashes(manifest)
    ours = {n for n in listed if unchanged(folder, n, listed)}  # a missing or unreadable mask is not
    clash = next((n for n in names if (folder / n).exists() and n not in ours), None)
    if clash is not None:
        raise DlcvError("{}: was not written by this script, or changed since; move it away or give a new "
                        "folder".format(folder / clash))
    return sorted(ours)


# --- the three tasks -------------------------------------------------------------------------------------
def predict_folder(folder, output):
    """Problem 1: write ``filename,label`` (or ``image_id,label``) per image of ``folder``, sorted by name."""
    output = check_output_file(output, [folder])
    files = list_images(folder)
    labels = classify(decode_all(files), device())
    make_parent(output)
    with atomic_write(output, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([CONFIG["id_column"], "label"])
        writer.writerows((p.name, label) for p, label in zip(files, labels))
    record_written(output, CONFIG["dlcv"])


def predict_csv(table, folder, output):
    """Office-Home: write ``id,filename,label`` for every row of ``table``, in its order."""
    output = check_output_file(output, [table, folder])
    rows, files = office_rows(table, folder)
    side = CONFIG["image_size"]
    images = np.stack([decode_resized(p, side) for p in files]) if side else decode_all(files)
    labels = classify(images, device())
    make_parent(output)
    with atomic_write(output, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "filename", "label"])
        writer.writerows((r["id"], r["filename"], label) for r, label in zip(rows, labels))
    record_written(output, CONFIG["dlcv"])


def predict_masks(folder, output):
    """Segmentation: write ``NNNN_mask.png`` in the course's colours per ``NNNN_sat.jpg`` of ``folder``.

    A new folder is filled under a temporary name, then renamed into place; an earlier one of this script's lists the
    new masks in its manifest first, so that a rerun replaces what a stopped run left.
    """
    tiles = satellite_tiles(folder)
    if not tiles:
        raise DlcvError("{}: no satellite images (expected NNNN_sat.jpg)".format(folder))
    ids = sorted(tiles)
    names = [i + "_mask.png" for i in ids]
    output = Path(output)
    earlier = check_output_folder(output, [Path(folder)], names)
    check_one_size([tiles[i] for i in ids])
    fresh = not output.exists()
    target = output.with_name(".{}.dlcv-staging-{}".format(output.name, os.getpid())) if fresh else output
    import torch
    from tta import predict_probs

    try:
        if fresh:
            make_parent(output)
            os.mkdir(str(target), 0o777 & ~current_umask())
        else:  # claimed first: a run stopped half-way leaves masks its manifest lists, which a rerun replaces
            write_manifest(target, MASKS, CONFIG["dlcv"], dict.fromkeys(set(earlier) | set(names)))
        dev = device()
        step, net = batch_size(dev), load_model(dev)
        with torch.no_grad(), autocast(dev):
            for i in range(0, len(ids), step):
                pixels = np.stack([decode_image(tiles[n]) for n in ids[i:i + step]])
                probs = predict_probs(functools.partial(run, net), segment_input(pixels, dev), pixels.shape[1:3],
                                      CONFIG["tta"])
                for name, classes in zip(names[i:i + step], probs.argmax(1).cpu().numpy()):
                    with atomic_path(target / name) as tmp:
                        Image.fromarray(COLOURS[classes]).save(str(tmp), format="PNG")
        write_manifest(target, MASKS, CONFIG["dlcv"], file_hashes(target, names))
        for stale in set(earlier) - set(names):  # an earlier run's masks of tiles no longer given
            with contextlib.suppress(OSError):
                (output / stale).unlink()
        if fresh:
            os.replace(str(target), str(output))
    except OSError as exc:
        raise write_error(output, exc) from None
    finally:
        if fresh and target.exists():
            shutil.rmtree(str(target), ignore_errors=True)


def stop(signum, frame):
    """SIGTERM ends the script as Ctrl-C does: what it was writing is removed, nothing half-written stays."""
    raise KeyboardInterrupt


def main(argv):
    """Predict for the paths in ``argv``; exit 2 for bad input, 130 when interrupted, 1 if the model fails."""
    task = CONFIG["task"]
    usage = {"folder": "IMAGE_DIR OUTPUT_CSV", "csv": "INPUT_CSV IMAGE_DIR OUTPUT_CSV",
             "masks": "IMAGE_DIR OUTPUT_DIR"}[task]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s " + usage)
    parser.add_argument("paths", nargs=len(usage.split()), help=usage)
    paths = parser.parse_args(argv).paths
    signal.signal(signal.SIGTERM, stop)
    try:
        for path in paths:
            check_utf8_name(path)
        {"folder": predict_folder, "csv": predict_csv, "masks": predict_masks}[task](*paths)
    except DlcvError as exc:
        sys.stderr.write("error: {}\n".format(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing was left half-written\n")
        sys.exit(130)
    except (RuntimeError, MemoryError) as exc:  # the model could not run here (memory, a missing operation)
        line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        sys.stderr.write("error: the model could not run on this machine ({})\n".format(line))
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
