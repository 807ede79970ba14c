"""Test-time augmentation: each task's views, their forward passes, and the one inference loop.

One function per task averages a model over the views (validation, final scoring, ``predict``). Torch only, in Python
3.6's syntax: the hand-in folder ships this file as it is, so its scripts predict through the same code.
"""
import torch
import torch.nn.functional as F

# Classification: (window offset in the image reflect-padded by 1 px, None: the image; weight; mirrored too).
# ``flip_shift`` adds the image shifted one pixel diagonally either way at half weight, as airbench does.
CLASSIFY_VIEWS = {"none": ((None, 1.0, False),), "flip": ((None, 1.0, True),),
                  "flip_shift": ((None, 1.0, True), (0, 0.5, True), (2, 0.5, True))}
# Segmentation: (quarter turns, mirrored); one forward pass each.
SEGMENT_VIEWS = {"none": ((0, False),), "flip": ((0, False), (0, True)),
                 "d4": tuple((k, m) for k in range(4) for m in (False, True))}


def classify_passes(tta: str) -> int:
    """Return a classifier's forward passes per image under ``tta``: one per view and one per mirror."""
    return sum(1 + mirrored for _, _, mirrored in CLASSIFY_VIEWS[tta])


def predict_logits(model: torch.nn.Module, x: torch.Tensor, tta: str = "flip") -> torch.Tensor:
    """Return a classifier's logits under ``tta``: the weighted mean over ``CLASSIFY_VIEWS[tta]``.

    Args:
        model: the classifier.
        x: (N, 3, H, W) input batch.
        tta: ``none``, ``flip`` or ``flip_shift``.

    Returns:
        (N, C) logits.
    """
    views, total, padded = CLASSIFY_VIEWS[tta], None, None
    h, w = x.shape[-2:]
    for offset, weight, mirrored in views:
        view = x
        if offset is not None:
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect") if padded is None else padded
            view = padded[:, :, offset : offset + h, offset : offset + w]
        logits = model(view) + model(view.flip(3)) if mirrored else model(view)
        term = logits if weight == 1 else weight * logits
        total = term if total is None else total + term
    return total / sum(weight * (1 + mirrored) for _, weight, mirrored in views)


def predict_probs(model: torch.nn.Module, x: torch.Tensor, size: tuple, tta: str = "none") -> torch.Tensor:
    """Return a segmenter's class probabilities on ``x``, averaged over ``tta``'s views and resized bilinearly.

    Args:
        model: the segmenter, mapping (N, 3, H, W) to (N, C, H, W) logits.
        x: (N, 3, H, W) input batch.
        size: (height, width) of the output.
        tta: ``none``, ``flip`` or ``d4`` (``SEGMENT_VIEWS``).

    Returns:
        (N, C, *size) float32 probabilities.
    """
    views = SEGMENT_VIEWS[tta]
    total = 0
    for k, mirror in views:
        v = x.flip(3) if mirror else x
        logits = model(torch.rot90(v, k, dims=(2, 3)) if k else v).float()
        logits = torch.rot90(logits, -k, dims=(2, 3)) if k else logits
        total = total + F.softmax(logits.flip(3) if mirror else logits, dim=1)
    total = total / len(views)
    if tuple(total.shape[-2:]) != tuple(size):
        total = F.interpolate(total, size=size, mode="bilinear", align_corners=False)
    return total


def batches(images, batch_size: int, device: torch.device, prepare=None, load=None):
    """Yield ``(start, batch)`` per batch of ``images``: the one inference loop.

    Each batch travels to ``device`` as uint8 (a quarter of float's bytes) and goes through ``prepare`` there.

    Args:
        images: uint8 (N, H, W, 3) images, or what ``load`` reads a slice of.
        batch_size: images per batch.
        device: where the batches go; None: where they are.
        prepare: turns a uint8 batch into model input; None: the batch as it is.
        load: turns a slice of ``images`` into a uint8 array or tensor; None: the slice itself.
    """
    for start in range(0, len(images), batch_size):
        part = images[start : start + batch_size]
        x = torch.as_tensor(load(part) if load is not None else part).to(device)
        yield start, (prepare(x) if prepare is not None else x)
