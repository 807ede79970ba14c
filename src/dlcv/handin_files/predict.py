"""DLCV HW1 prediction as the course runs it, written by `dlcv handin`: plain torch, numpy and Pillow.
The model class and state_dict beside this file (``CONFIG``) predict as the source checkpoint's ``dlcv ... predict``,
through dlcv's own test-time augmentation (``tta.py`` beside it).
Python 3.6 or later; torch 1.4 or later (1.11 where the segmenter resizes its tiles on a GPU).
"""
import argparse
import csv
import functools
import importlib
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tta import predict_logits, predict_probs

CONFIG = {}  # filled in by dlcv handin: the task, the model, its input and its test-time augmentation
HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
COLOURS = np.array([(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255),
                    (0, 0, 0)], dtype=np.uint8)  # the course's mask colours, classes 0-6


def fail(message):
    sys.stderr.write("error: " + message + "\n")
    sys.exit(2)


def load_model(device):
    """The plain model with its weights, on ``device``, for inference."""
    weights = os.path.join(HERE, CONFIG["weights"])
    if not os.path.isfile(weights):
        fail("{} is missing: run the download script first ({})".format(weights, CONFIG["download"]))
    sys.path.insert(0, HERE)
    net = importlib.import_module(CONFIG["model"]).Net()
    state = torch.load(weights, map_location="cpu")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    layout = getattr(torch, "channels_last", None)  # torch 1.5 on: dlcv's layout, so its kernels and sums
    return net.eval().to(device, memory_format=layout) if layout is not None else net.eval().to(device)


def autocast(device):
    """``dlcv ... predict``'s precision: below float32, the GPU's half type or bf16 on a bf16 CPU; else float32."""
    precision = CONFIG["precision"]
    if device.type == "cuda":
        half = torch.bfloat16 if torch.cuda.is_bf16_supported() and precision != "16-mixed" else torch.float16
        return torch.autocast("cuda", dtype=half, enabled=not precision.startswith(("32", "64")))
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        flags = ""
    fast = " avx512_bf16" in flags or " amx_bf16" in flags
    return torch.autocast("cpu", dtype=torch.bfloat16,
                          enabled=fast and (precision.startswith("bf16") or precision == "auto"))


def batch_size(device):
    """Images per batch: ``dlcv ... predict``'s on a GPU when the model takes any batch (kernels are chosen by shape,
    so near ties fall alike), else the batch it was traced at."""
    return CONFIG["predict_batch"] if CONFIG["any_batch"] and device.type != "cpu" else CONFIG["batch"]


def run(net, x):
    """The model on ``x``: whole where it takes any batch, else in batches of its traced size (the last one padded)."""
    size, out = CONFIG["batch"], []
    if CONFIG["side"] and tuple(x.shape[-2:]) != (CONFIG["side"], CONFIG["side"]):
        fail("the model was exported for {0}x{0} inputs, not {1}x{2}".format(CONFIG["side"], *x.shape[-2:]))
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
    """uint8 (N, H, W, 3) -> (N, 3, H, W) floats, as the model was trained: x * scale + shift per channel, with
    dlcv's float32 scale 1 / (255 std) and shift -mean / std."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float()
    scale = torch.tensor([1.0 / (255.0 * s) for s in CONFIG["std"]], dtype=torch.float32, device=device)
    shift = torch.tensor([-m / s for m, s in zip(CONFIG["mean"], CONFIG["std"])], dtype=torch.float32,
                         device=device)
    return (x * scale + shift).permute(0, 3, 1, 2)


def read_rgb(path):
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except OSError as exc:
        fail("{}: not a readable image ({})".format(path, exc))


def classify(images, device):
    """Labels of uint8 (N, H, W, 3) images."""
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


def image_folder(folder):
    if not os.path.isdir(folder):
        fail("{}: no such folder".format(folder))
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        fail("{}: no images (.png, .jpg) here".format(folder))
    return names


def resized(path, side):
    """An image at ``side`` x ``side`` (bicubic), as dlcv reads a folder of mixed sizes."""
    image = read_rgb(path)
    if side is None or image.shape[:2] == (side, side):
        return image
    return np.asarray(Image.fromarray(image).resize((side, side), Image.BICUBIC), dtype=np.uint8)


def predict_folder(folder, output):
    """Problem 1: ``filename,label`` (or ``image_id,label``) for every image of ``folder``, by file name."""
    names = image_folder(folder)
    images = np.stack([read_rgb(os.path.join(folder, n)) for n in names])
    if len({im.shape for im in images}) > 1:
        fail("{}: the images are not all of one size".format(folder))
    labels = classify(images, device())
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([CONFIG["id_column"], "label"])
        writer.writerows(zip(names, labels))


def predict_csv(table, folder, output):
    """Office-Home: ``id,filename,label`` for every row of ``table``, in its order."""
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "id" not in rows[0] or "filename" not in rows[0]:
        fail("{}: expected the columns id,filename[,label]".format(table))
    images = np.stack([resized(os.path.join(folder, r["filename"]), CONFIG["image_size"]) for r in rows])
    labels = classify(images, device())
    with open(output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "filename", "label"])
        writer.writerows((r["id"], r["filename"], label) for r, label in zip(rows, labels))


def segment_input(tiles, device):
    """uint8 (B, H, W, 3) tiles -> the model's input at the evaluation size: resized as uint8 on a CPU (as dlcv;
    Pillow's before torch 2.1), else as floats."""
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


def predict_masks(folder, output):
    """Segmentation: ``NNNN_mask.png`` (the course's colours) for every ``NNNN_sat.jpg`` of ``folder``."""
    if not os.path.isdir(folder):
        fail("{}: no such folder".format(folder))
    ids = sorted(n[:-len("_sat.jpg")] for n in os.listdir(folder) if n.lower().endswith("_sat.jpg"))
    if not ids:
        fail("{}: no satellite images (NNNN_sat.jpg) here".format(folder))
    if not os.path.isdir(output):
        os.makedirs(output)
    dev = device()
    step = batch_size(dev)
    net = load_model(dev)
    with torch.no_grad(), autocast(dev):
        for i in range(0, len(ids), step):
            tiles = np.stack([read_rgb(os.path.join(folder, n + "_sat.jpg")) for n in ids[i:i + step]])
            probs = predict_probs(functools.partial(run, net), segment_input(tiles, dev), tiles.shape[1:3],
                                  CONFIG["tta"])
            for name, classes in zip(ids[i:i + step], probs.argmax(1).cpu().numpy()):
                Image.fromarray(COLOURS[classes]).save(os.path.join(output, name + "_mask.png"))


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main(argv):
    task = CONFIG["task"]
    usage = {"folder": "IMAGE_DIR OUTPUT_CSV", "csv": "INPUT_CSV IMAGE_DIR OUTPUT_CSV",
             "masks": "IMAGE_DIR OUTPUT_DIR"}[task]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], usage="%(prog)s " + usage)
    parser.add_argument("paths", nargs=len(usage.split()), help=usage)
    paths = parser.parse_args(argv).paths
    {"folder": predict_folder, "csv": predict_csv, "masks": predict_masks}[task](*paths)


if __name__ == "__main__":
    main(sys.argv[1:])
