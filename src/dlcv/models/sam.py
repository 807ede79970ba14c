"""Segment Anything: segment-anything's SAMs from local checkpoints (nothing downloaded), and a mask generator.

``vit_tiny`` is a small-encoder SAM with no published weights, for tests and smoke runs. ``mask_generator`` adds a
callback per batch of prompts and ``prefilter``: low-IoU masks dropped before up-sampling, the same masks surviving.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from dlcv.errors import DlcvError
from dlcv.models.weights import load_state_file
from dlcv.rules import SAM_TYPES

CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
# The official checkpoint file of each model type (segment-anything's README); "default" is vit_h.
CHECKPOINT_FILES = {
    "vit_h": "sam_vit_h_4b8939.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_b": "sam_vit_b_01ec64.pth",
    "default": "sam_vit_h_4b8939.pth",
}
TINY = "vit_tiny"


def build_tiny_sam():
    """Build a tiny random SAM: a 2-block, 32-wide ViT encoder and a 2-layer mask decoder.

    Its encoder takes 64x64 images (resized to it as the real SAM resizes to 1024) and gives a 4x4 embedding.
    """
    img_size, prompt_dim = 64, 32
    grid = img_size // 16
    encoder = ImageEncoderViT(img_size=img_size, patch_size=16, embed_dim=32, depth=2, num_heads=2,
                              mlp_ratio=2.0, out_chans=prompt_dim, qkv_bias=True,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
                              window_size=0, global_attn_indexes=(1,))
    prompts = PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                            input_image_size=(img_size, img_size), mask_in_chans=8)
    decoder = MaskDecoder(num_multimask_outputs=3, transformer_dim=prompt_dim,
                          transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
                          iou_head_depth=2, iou_head_hidden_dim=32)
    return Sam(image_encoder=encoder, prompt_encoder=prompts, mask_decoder=decoder,
               pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])


def check_sam_type(model_type: str) -> None:
    """Check that ``model_type`` is one of ``SAM_TYPES`` (the published types and ``vit_tiny``).

    Raises:
        DlcvError: if it is not.
    """
    if model_type not in SAM_TYPES:
        raise DlcvError(f"SAM model type {model_type!r} is not one of {', '.join(SAM_TYPES)}")


def build_sam(model_type: str):
    """Build an untrained SAM of ``model_type`` (vit_h, vit_l, vit_b, default or vit_tiny).

    Raises:
        DlcvError: if ``model_type`` is none of these.
    """
    check_sam_type(model_type)
    if model_type == TINY:
        return build_tiny_sam()

    return sam_model_registry[model_type](checkpoint=None)


def fetch_checkpoint(url: str) -> tuple[Path, dict | None]:
    """Download the SAM checkpoint at ``url`` once into torch's hub cache, with a progress bar.

    A file already there is used as it is; a downloaded one is checked by loading it, and removed if it does not load
    (a transfer cut short).

    Returns:
        ``(path, state)``: the file, and its state_dict when this call downloaded (and so loaded) it, else None.

    Raises:
        DlcvError: if ``url`` does not name a ``.pth`` file, or the download fails or gives no checkpoint (one line
            naming the file to fetch by hand and where to put it).
    """
    from dlcv.models.weights import online

    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if not name.endswith((".pth", ".pt")) or not name.isprintable():
        raise DlcvError(f"--checkpoint {url}: not the address of a checkpoint file (NAME.pth)")
    target = Path(torch.hub.get_dir()) / "checkpoints" / name
    where = (url, f"put it at {target} (torch's hub cache), or give its path with --checkpoint")
    if target.is_file():
        return target, None
    target.parent.mkdir(parents=True, exist_ok=True)
    online(lambda: torch.hub.download_url_to_file(url, str(target), progress=True), "SAM checkpoint", source=where)
    try:
        return target, load_state_file(target)
    except DlcvError as exc:
        target.unlink(missing_ok=True)
        raise DlcvError(f"SAM checkpoint {url}: the download gave no checkpoint ({exc}): fetch {where[0]} and "
                        f"{where[1]}") from None


def load_sam(checkpoint: str | os.PathLike, model_type: str):
    """Load a SAM of ``model_type`` with a checkpoint's weights, in eval mode.

    Args:
        checkpoint: the checkpoint file (segment-anything's ``sam_vit_*.pth``, or a saved ``vit_tiny``), or its
            http(s) address, downloaded once into torch's hub cache (``fetch_checkpoint``).
        model_type: ``vit_h``, ``vit_l``, ``vit_b``, ``default`` (vit_h) or ``vit_tiny``.

    Returns:
        segment-anything's ``Sam`` model.

    Raises:
        DlcvError: if the type is unknown, or the file is missing (the message names the official file and its
            URL), unreadable, or no checkpoint of that type.
    """
    check_sam_type(model_type)
    path, state = fetch_checkpoint(str(checkpoint)) if str(checkpoint).startswith(("http://", "https://")) else \
        (Path(checkpoint), None)
    if not path.is_file():
        if model_type == TINY:
            raise DlcvError(f"{path}: no such checkpoint; {TINY} has no published weights (save one from "
                            "dlcv.models.sam.build_sam)")
        name = CHECKPOINT_FILES[model_type]
        raise DlcvError(f"{path}: no such checkpoint; SAM model type {model_type} needs the file {name}, published "
                        f"at {CHECKPOINT_URL}{name} (pass that address, or the downloaded file's path, with "
                        "--checkpoint)")
    state = state if state is not None else load_state_file(path)  # a fresh download was loaded to check it
    model = build_sam(model_type)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        detail = (f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
                  f"(e.g. {unexpected[:2]}), {len(wrong)} of another shape (e.g. {wrong[:2]})")
        raise DlcvError(f"{path}: not a SAM {model_type} checkpoint: {detail}")
    model.load_state_dict(state)
    return model.eval()


class PromptPredictor(SamPredictor):
    """``SamPredictor`` with a callback per batch of prompts and an IoU filter before up-sampling.

    The automatic mask generator up-samples every mask of a batch to the image's size, then drops those not above its
    predicted-IoU threshold; with ``iou_floor`` at that threshold, those masks come back as logits below
    ``mask_threshold`` without being up-sampled, and the generator drops them as before: its masks are the same.
    """

    def __init__(self, model, iou_floor: float | None = None):
        """Wrap ``model`` for prompting.

        Args:
            model: a segment-anything ``Sam``.
            iou_floor: masks whose predicted IoU is not above it are never up-sampled; None: every mask is.
        """
        super().__init__(model)
        self.iou_floor = iou_floor
        self.on_batch = None  # set by ``dlcv.sam.SamRunner`` to advance its progress bar

    @torch.no_grad()
    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None, multimask_output=True,
                      return_logits=False):
        """Predict masks as ``SamPredictor.predict_torch`` does, then call ``on_batch``.

        With ``iou_floor`` set and point prompts alone, ``predict_above_floor`` predicts. Arguments and results are
        segment-anything's: ``(masks, iou_predictions, low_res_masks)``, each ``(B, M, ...)``.
        """
        if self.iou_floor is None or boxes is not None or mask_input is not None:
            result = super().predict_torch(point_coords, point_labels, boxes, mask_input, multimask_output,
                                           return_logits)
        else:
            result = self.predict_above_floor(point_coords, point_labels, multimask_output, return_logits)
        if self.on_batch is not None:
            self.on_batch()
        return result

    def predict_above_floor(self, point_coords, point_labels, multimask_output: bool, return_logits: bool):
        """Predict masks for point prompts, up-sampling only those whose predicted IoU is above ``iou_floor``.

        Args:
            point_coords: (B, N, 2) point prompts (x, y), in pixels of the model's input frame.
            point_labels: (B, N) labels: 1 a foreground point, 0 a background one.
            multimask_output: three masks per prompt if true, else one.
            return_logits: return the logits instead of boolean masks.

        Returns:
            ``(masks, iou_predictions, low_res_masks)``: (B, M, H, W) at the original image size, where a mask not
            up-sampled holds the dtype's lowest logit (False as a boolean mask); (B, M); (B, M, h, w) logits.
        """
        model = self.model
        sparse, dense = model.prompt_encoder(points=(point_coords, point_labels), boxes=None, masks=None)
        low_res, iou_predictions = model.mask_decoder(image_embeddings=self.features,
                                                      image_pe=model.prompt_encoder.get_dense_pe(),
                                                      sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                                      multimask_output=multimask_output)
        masks = low_res.new_full((*low_res.shape[:2], *self.original_size), torch.finfo(low_res.dtype).min)
        kept = torch.nonzero(iou_predictions > self.iou_floor)
        for i in range(0, len(kept), 64):  # 64 at a time: a 1024x1024 float32 logit map is 4 MiB
            rows, outputs = kept[i : i + 64].unbind(1)
            masks[rows, outputs] = model.postprocess_masks(low_res[rows, outputs][:, None], self.input_size,
                                                           self.original_size)[:, 0]
        return (masks if return_logits else masks > model.mask_threshold), iou_predictions, low_res


def mask_generator(model, knobs: dict, prefilter: bool = False):
    """Build segment-anything's automatic mask generator over ``model``, prompting through a ``PromptPredictor``.

    Args:
        model: a segment-anything ``Sam``.
        knobs: ``SamAutomaticMaskGenerator``'s arguments but ``point_grids`` and ``output_mode`` (masks always come
            as COCO RLE).
        prefilter: skip up-sampling the masks that the predicted-IoU threshold drops (the masks kept are the same).

    Returns:
        The generator; setting its ``predictor.on_batch`` follows its batches of prompts.
    """
    generator = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **knobs)
    threshold = generator.pred_iou_thresh
    generator.predictor = PromptPredictor(model, iou_floor=threshold if prefilter and threshold > 0 else None)
    return generator
