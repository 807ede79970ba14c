"""Segment Anything: ``segment-anything``'s SAMs from local checkpoints (nothing downloaded), and a mask generator.

``vit_tiny`` is a small-encoder SAM with no published weights, for tests and smoke runs. ``MaskGenerator`` adds a
callback per batch of prompts and ``prefilter``: low-IoU masks dropped before up-sampling, the same masks surviving.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import torch
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
    mask_to_rle_pytorch,
    uncrop_masks,
)

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
    """A SAM with a 2-block, 32-wide ViT encoder and a 2-layer decoder, random unless loaded; its encoder takes 64x64
    (images resized to it as to the real SAM's 1024), its embedding 4x4."""
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
    """One line for a model type that is none of ``SAM_TYPES`` (the published types and TINY)."""
    if model_type not in SAM_TYPES:
        raise DlcvError(f"SAM model type {model_type!r} is not one of {', '.join(SAM_TYPES)}")


def build_sam(model_type: str):
    """An untrained SAM of ``model_type`` (vit_h, vit_l, vit_b, default or vit_tiny)."""
    check_sam_type(model_type)
    if model_type == TINY:
        return build_tiny_sam()

    return sam_model_registry[model_type](checkpoint=None)


def load_sam(checkpoint: str | os.PathLike, model_type: str):
    """SAM of ``model_type`` with the weights of a local checkpoint file, in eval mode."""
    check_sam_type(model_type)
    path = Path(checkpoint)
    if not path.is_file():
        if model_type == TINY:
            raise DlcvError(f"{path}: no such checkpoint; {TINY} has no published weights (save one from "
                            "dlcv.models.sam.build_sam)")
        name = CHECKPOINT_FILES[model_type]
        raise DlcvError(f"{path}: no such checkpoint; SAM model type {model_type} needs the file {name}, published "
                        f"at {CHECKPOINT_URL}{name} (download it and pass its path with --checkpoint)")
    state = load_state_file(path)
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


def _prefiltered_batch(generator, points, im_size, crop_box, orig_size):
    """``SamAutomaticMaskGenerator._process_batch``, dropping masks under the IoU threshold before up-sampling them."""
    predictor, model = generator.predictor, generator.predictor.model
    orig_h, orig_w = orig_size
    coords = torch.as_tensor(predictor.transform.apply_coords(points, im_size), device=predictor.device)
    labels = torch.ones(coords.shape[0], dtype=torch.int, device=coords.device)
    sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
    low_res, iou_preds = model.mask_decoder(image_embeddings=predictor.features,
                                            image_pe=model.prompt_encoder.get_dense_pe(),
                                            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                            multimask_output=True)
    per_point = low_res.shape[1]
    low_res, iou_preds = low_res.flatten(0, 1), iou_preds.flatten(0, 1)
    point_rows = torch.as_tensor(points.repeat(per_point, axis=0))
    if generator.pred_iou_thresh > 0.0:
        keep = iou_preds > generator.pred_iou_thresh
        low_res, iou_preds, point_rows = low_res[keep], iou_preds[keep], point_rows[keep.cpu()]
    # Up-sampled as SAM does (to the encoder's input, crop the padding, to the image), kept masks
    # only, 64 at a time: a 1024x1024 float logit map is 4 MiB.
    masks = torch.cat([model.postprocess_masks(low_res[i : i + 64, None], predictor.input_size,
                                               predictor.original_size)[:, 0]
                       for i in range(0, len(low_res), 64)]) if len(low_res) else \
        low_res.new_zeros((0, *predictor.original_size))
    data = MaskData(masks=masks, iou_preds=iou_preds, points=point_rows)
    data["stability_score"] = calculate_stability_score(data["masks"], model.mask_threshold,
                                                        generator.stability_score_offset)
    if generator.stability_score_thresh > 0.0:
        data.filter(data["stability_score"] >= generator.stability_score_thresh)
    data["masks"] = data["masks"] > model.mask_threshold
    data["boxes"] = batched_mask_to_box(data["masks"])
    inside = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
    if not torch.all(inside):
        data.filter(inside)
    data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
    data["rles"] = mask_to_rle_pytorch(data["masks"])
    del data["masks"]
    return data


def mask_generator(model, knobs: dict, prefilter: bool = False):
    """The automatic mask generator over ``model`` with ``knobs`` (every ``SamAutomaticMaskGenerator``
    argument but ``point_grids`` and ``output_mode``: masks always come as COCO RLE)."""
    class MaskGenerator(SamAutomaticMaskGenerator):
        """``SamAutomaticMaskGenerator`` with ``on_batch`` (called per batch of points) and ``prefilter``."""

        def __init__(self, model, *, prefilter: bool = False, **knobs):
            super().__init__(model, output_mode="coco_rle", **knobs)
            self.prefilter = prefilter
            self.on_batch = None  # set by ``dlcv.sam.SamRunner`` to advance its progress bar

        def _process_batch(self, points, im_size, crop_box, orig_size):
            data = _prefiltered_batch(self, points, im_size, crop_box, orig_size) if self.prefilter \
                else super()._process_batch(points, im_size, crop_box, orig_size)
            if self.on_batch is not None:
                self.on_batch()
            return data

    return MaskGenerator(model, prefilter=prefilter, **knobs)
