"""A tiny CLIP (Radford et al. 2021) for the glyph world, and the two encodings unCLIP reads from any CLIP.

The model is a plain ``transformers.CLIPModel`` with a small config, so everything downstream (the unCLIP prior and
decoder, their pipelines) works unchanged with a real Hub CLIP. unCLIP (Ramesh et al. 2022, §2) uses, per caption y and
image x: the text token encodings (the text transformer's last hidden states), the text embedding z_t and the image
embedding z_i (the projected pooled outputs; not normalised here, the prior standardises them with data statistics).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import CLIPConfig, CLIPModel

try:  # transformers >= 5: the PIL backend by name (CLIPImageProcessor warns without torchvision, then falls back to it)
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # transformers 4
    from transformers import CLIPImageProcessor


def glyph_clip_config(
    tokenizer: Any,
    image_size: int = 32,
    patch_size: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    projection_dim: int = 32,
) -> CLIPConfig:
    """A CLIPConfig small enough to train on CPU in a minute: both towers ``num_layers`` x ``hidden_size``, the vision
    tower a ViT over ``(image_size / patch_size)**2`` patches, the text tower sized to ``tokenizer`` (vocabulary,
    special-token ids, ``model_max_length`` positions)."""
    tower = dict(
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        projection_dim=projection_dim,
    )
    text_config = dict(
        tower,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooled at the first eos (not argmax of ids), so add_tokens is safe
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = dict(tower, image_size=image_size, patch_size=patch_size)
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


def glyph_clip_image_processor(image_size: int = 32) -> CLIPImageProcessor:
    """CLIP's preprocessing (resize shortest edge, centre crop, rescale to [0, 1], normalise with CLIP's mean/std) at
    ``image_size``; saved next to the model so any CLIP pipeline reads images the same way."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})


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
