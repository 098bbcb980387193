"""The encodings unCLIP (Ramesh et al. 2022, §2) reads from any CLIP, per caption y and image x: the text token
encodings (the text transformer's last hidden states), the text embedding z_t and the image embedding z_i (the
projected pooled outputs; not normalised here, the prior standardises them with data statistics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import CLIPModel

from .glyph_clip import CLIPImageProcessor


def images_to_pixel_values(images: Any, image_processor: CLIPImageProcessor) -> torch.Tensor:
    """Images (a list of PIL images, an NHWC float array in [0, 1] or an NCHW float tensor in [0, 1]) -> CLIP
    ``pixel_values`` (N, 3, H, W)."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images as a tensor must be NCHW, got shape {tuple(images.shape)}")
        images = images.permute(0, 2, 3, 1).float().cpu().numpy()
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images as an array must be NHWC, got shape {images.shape}")
        # float images already at the crop size are only normalised: a resize would round them through uint8
        crop = image_processor.crop_size
        same_size = images.shape[1:3] == (crop["height"], crop["width"])
        return image_processor(
            images=list(images), return_tensors="pt", do_rescale=False, do_resize=not same_size,
            do_center_crop=not same_size,
        ).pixel_values
    return image_processor(images=list(images), return_tensors="pt").pixel_values


@torch.no_grad()
def encode_prompts(
    text_encoder: Any, tokenizer: Any, prompts: Sequence[str], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CLIP text side for unCLIP.

    Args:
        text_encoder: a ``CLIPTextModelWithProjection`` or a ``CLIPModel``.
        prompts: B strings, padded to ``tokenizer.model_max_length``.

    Returns:
        ``text_embeds`` (B, D) projected pooled output z_t, ``token_encodings`` (B, L, H) last hidden states and
        ``attention_mask`` (B, L) (1 for real tokens).
    """
    device = device or next(text_encoder.parameters()).device
    batch = tokenizer(list(prompts), padding="max_length", truncation=True, return_tensors="pt").to(device)
    if isinstance(text_encoder, CLIPModel):
        out = text_encoder.text_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        text_embeds = text_encoder.text_projection(out.pooler_output)
    else:
        out = text_encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        text_embeds = out.text_embeds
    return text_embeds, out.last_hidden_state, batch.attention_mask


@torch.no_grad()
def encode_images(image_encoder: Any, image_processor: CLIPImageProcessor, images: Any) -> torch.Tensor:
    """CLIP image embeddings z_i (N, D) (projected pooled output) from a ``CLIPVisionModelWithProjection`` or a
    ``CLIPModel``; ``images`` as in :func:`images_to_pixel_values`."""
    device = next(image_encoder.parameters()).device
    pixel_values = images_to_pixel_values(images, image_processor).to(device)
    if isinstance(image_encoder, CLIPModel):
        return image_encoder.visual_projection(image_encoder.vision_model(pixel_values=pixel_values).pooler_output)
    return image_encoder(pixel_values=pixel_values).image_embeds


@torch.no_grad()
def encode_pairs(
    clip: CLIPModel, tokenizer: Any, image_processor: CLIPImageProcessor, images: Sequence[Any],
    captions: Sequence[str], batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """A frozen CLIP once over N (image, caption) pairs, in batches, for training an unCLIP prior or decoder.

    Returns:
        ``image_embeds`` z_i (N, D), ``text_embeds`` z_t (N, D), ``tokens`` (N, L, H) and ``mask`` (N, L).
    """
    if len(images) != len(captions) or not len(captions):
        raise ValueError(f"need as many images as captions (at least 1), got {len(images)} and {len(captions)}")
    chunks = []
    for start in range(0, len(captions), batch_size):
        text_embeds, tokens, mask = encode_prompts(clip, tokenizer, captions[start : start + batch_size])
        image_embeds = encode_images(clip, image_processor, images[start : start + batch_size])
        chunks.append(dict(image_embeds=image_embeds, text_embeds=text_embeds, tokens=tokens, mask=mask))
    return {key: torch.cat([chunk[key] for chunk in chunks]) for key in chunks[0]}
