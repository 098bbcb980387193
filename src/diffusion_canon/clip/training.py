"""Contrastive training of the tiny glyph CLIP and its text -> image retrieval accuracy.

CLIP's objective (Radford et al. 2021, Fig. 3): for a batch of B (image, caption) pairs, the symmetric cross-entropy
over the B x B matrix of scaled cosine similarities ``logit_scale * <z_t / |z_t|, z_i / |z_i|>`` with the matching
pairs on the diagonal — ``CLIPModel(..., return_loss=True)`` computes exactly this.

Command line: ``diffusion-canon train-clip --output_dir DIR`` (:func:`run`) trains on the glyph world and
saves a folder that ``CLIPModel``, ``CLIPTokenizer`` and ``CLIPImageProcessor`` ``.from_pretrained(DIR)`` all load.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from transformers import CLIPModel

from .encoding import images_to_pixel_values
from .glyph_clip import CLIPImageProcessor, glyph_clip_config, glyph_clip_image_processor


def train_glyph_clip(
    images: Any,
    captions: Sequence[str],
    tokenizer: Any,
    model: CLIPModel | None = None,
    image_processor: CLIPImageProcessor | None = None,
    num_steps: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 0.1,
    seed: int = 0,
    log_every: int = 0,
) -> CLIPModel:
    """Train ``model`` (a fresh :func:`glyph_clip_config` CLIP when None) contrastively on (image, caption) pairs.

    Images are preprocessed once (N, 3, H, W); each step draws a batch without replacement (reshuffling per epoch)
    from a generator seeded with ``seed``; AdamW with 5% warm-up then cosine decay. Returns the model in eval mode.
    """
    if len(images) != len(captions) or len(captions) < 2:
        raise ValueError(f"need as many images as captions (at least 2), got {len(images)} and {len(captions)}")
    torch.manual_seed(seed)
    image_processor = image_processor or glyph_clip_image_processor()
    model = model or CLIPModel(glyph_clip_config(tokenizer, image_size=image_processor.crop_size["height"]))
    pixel_values = images_to_pixel_values(images, image_processor)
    text = tokenizer(list(captions), padding="max_length", truncation=True, return_tensors="pt")
    batch_size = min(batch_size, len(captions))

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, num_steps // 20), num_steps)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(captions), generator=generator)
    cursor = 0
    model.train()
    for step in range(num_steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(captions), generator=generator), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        loss = model(
            input_ids=text.input_ids[index],
            attention_mask=text.attention_mask[index],
            pixel_values=pixel_values[index],
            return_loss=True,
        ).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if log_every and (step % log_every == 0 or step == num_steps - 1):
            print(f"step {step:5d}  contrastive loss {loss.item():.4f}", flush=True)
    return model.eval()


@torch.no_grad()
def text_to_image_retrieval(
    model: CLIPModel, tokenizer: Any, images: Any, captions: Sequence[str], image_processor: CLIPImageProcessor
) -> dict[str, float]:
    """Top-1 text -> image retrieval among the N given pairs.

    For each caption, the image with the highest cosine similarity is retrieved; it counts as correct when its own
    caption is the same string (two renderings of "a red serif letter Q" are equally right). ``chance`` is the
    accuracy of a uniformly random pick under the same rule: mean over queries of (#images with that caption) / N.

    Returns:
        ``{"top1": float, "chance": float, "n": N}``.
    """
    model.eval()
    pixel_values = images_to_pixel_values(images, image_processor)
    text = tokenizer(list(captions), padding="max_length", truncation=True, return_tensors="pt")
    out = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixel_values)
    retrieved = out.logits_per_text.argmax(dim=1).tolist()
    n = len(captions)
    top1 = sum(captions[j] == captions[i] for i, j in enumerate(retrieved)) / n
    chance = sum(captions.count(c) for c in captions) / n / n
    return {"top1": top1, "chance": chance, "n": n}


def run(args: argparse.Namespace) -> int:
    from ..data.glyphs import load_glyphs
    from ..data.tokenizer import build_glyph_tokenizer
    from ..training import write_model_card

    start = time.perf_counter()
    tokenizer = build_glyph_tokenizer(args.output_dir)
    processor = glyph_clip_image_processor(args.resolution)
    train = load_glyphs(resolution=args.resolution, seed=args.seed, split="train", num_images=args.num_images)
    # a different seed draws fresh renderings (new attribute draws and jitter) that training never saw
    held_out = load_glyphs(resolution=args.resolution, seed=args.seed + 1, num_images=args.num_eval_images)
    config = glyph_clip_config(tokenizer, image_size=args.resolution, projection_dim=args.projection_dim,
                               hidden_size=args.hidden_size, num_layers=args.num_layers)
    model = train_glyph_clip(
        list(train["image"]),
        list(train["caption"]),
        tokenizer,
        model=CLIPModel(config),
        image_processor=processor,
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        log_every=100,
    )
    metrics = text_to_image_retrieval(model, tokenizer, list(held_out["image"]), list(held_out["caption"]), processor)
    metrics["train_seconds"] = round(time.perf_counter() - start, 1)
    model.save_pretrained(args.output_dir)  # safetensors
    processor.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "retrieval.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    write_model_card(
        args.output_dir, "unclip_clip", base_model=None, tags=["clip", "unclip"], metrics=metrics,
        config=model.config.to_dict(), num_images=args.num_images, num_steps=args.num_steps,
    )
    print(json.dumps(metrics))
    return 0
