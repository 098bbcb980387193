"""A tiny CLIP (Radford et al. 2021) for the glyph world: a plain ``transformers.CLIPModel`` with a small config, so
everything downstream (the unCLIP prior and decoder, their pipelines) works unchanged with a real Hub CLIP."""

from __future__ import annotations

from typing import Any

from transformers import CLIPConfig

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
    vision_hidden_size: int | None = None,
    vision_num_layers: int | None = None,
    vision_num_heads: int | None = None,
) -> CLIPConfig:
    """A CLIPConfig small enough to train on a CPU: both towers ``num_layers`` x ``hidden_size`` unless the vision
    tower is given its own size (telling 36 characters apart takes a wider, deeper ViT than the caption's few attribute
    words need), the vision tower a ViT over ``(image_size / patch_size)**2`` patches, the text tower sized to
    ``tokenizer`` (vocabulary, special-token ids, ``model_max_length`` positions)."""

    def tower(width: int, depth: int, heads: int) -> dict[str, int]:
        return dict(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=depth, num_attention_heads=heads,
                    projection_dim=projection_dim)

    text_config = dict(
        tower(hidden_size, num_layers, num_heads),
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,  # pooled at the first eos (not argmax of ids), so add_tokens is safe
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = dict(
        tower(vision_hidden_size or hidden_size, vision_num_layers or num_layers, vision_num_heads or num_heads),
        image_size=image_size,
        patch_size=patch_size,
    )
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


def glyph_clip_image_processor(image_size: int = 32) -> CLIPImageProcessor:
    """CLIP's preprocessing (resize shortest edge, centre crop, rescale to [0, 1], normalise with CLIP's mean/std) at
    ``image_size``; saved next to the model so any CLIP pipeline reads images the same way."""
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
