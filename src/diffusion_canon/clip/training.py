"""Contrastive training of the tiny glyph CLIP and its text -> image retrieval accuracy.

CLIP's objective (Radford et al. 2021, Fig. 3): for a batch of B (image, caption) pairs, the symmetric cross-entropy
over the B x B matrix of scaled cosine similarities ``logit_scale * <z_t / |z_t|, z_i / |z_i|>`` with the matching
pairs on the diagonal — ``CLIPModel(..., return_loss=True)`` computes exactly this. Two additions make a CPU-sized
CLIP tell characters apart: batches of hard-negative groups (:func:`hard_negative_groups`) and linear attribute
probes on both embeddings (``labels`` of :func:`train_glyph_clip`). Retrieval is measured among random pairs
(:func:`text_to_image_retrieval`) and against hard negatives (:func:`hard_negative_retrieval`).

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

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.optimization import get_cosine_schedule_with_warmup
from PIL import Image
from transformers import CLIPModel

from ..data.glyphs import GlyphSpec, alternatives, glyph_specs, recaption, render_glyph
from .encoding import encode_images, encode_prompts, images_to_pixel_values
from .glyph_clip import CLIPImageProcessor, glyph_clip_config, glyph_clip_image_processor

# The probes read unit-norm embeddings scaled by CLIP's initial logit scale 1/0.07: unscaled, a probe's logits stay
# within its small initial weight norm and its cross-entropy barely left chance in 600 steps (7.1 of 9.3 nats).
PROBE_SCALE = 1 / 0.07
# What a hard negative differs in; a family with a single face (no other style) differs in its font instead.
HARD_NEGATIVE_ATTRIBUTES: tuple[str, ...] = ("character", "color", "style")
_CAPTION_STREAM = 7  # caption seeds [seed, _CAPTION_STREAM, index] stay clear of the glyph world's own streams


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
    group_size: int = 1,
    labels: dict[str, Sequence[int]] | None = None,
    label_weight: float = 1.0,
) -> CLIPModel:
    """Train ``model`` (a fresh :func:`glyph_clip_config` CLIP when None) contrastively on (image, caption) pairs.

    Images are preprocessed once (N, 3, H, W); each step draws a batch without replacement (reshuffling per epoch)
    from a generator seeded with ``seed``; AdamW with 5% warm-up then cosine decay. Returns the model in eval mode.

    ``group_size`` > 1 keeps runs of that many consecutive pairs together in every batch (``batch_size`` is rounded
    down to whole groups): the pairs of :func:`hard_negative_groups` differ in one attribute each, so each batch makes
    the loss tell character, colour and style apart instead of leaning on whichever attribute is rarest to share.

    ``labels`` (attribute name -> class index per pair) adds, with weight ``label_weight``, the cross-entropy of a
    linear probe per attribute on both normalised embeddings, one probe shared by the two towers. A ViT this small
    learns character shapes from the contrastive signal alone very slowly (held-out hard-negative top-1 0.14 after
    600 steps, the wrong character retrieved for 3 captions in 4; 0.655 and 1 in 9 with the probes); the probes
    make both embeddings carry each attribute linearly and in the same place. They are dropped after training: the saved model is a plain ``CLIPModel``.
    """
    if len(images) != len(captions) or len(captions) < 2:
        raise ValueError(f"need as many images as captions (at least 2), got {len(images)} and {len(captions)}")
    if group_size < 1 or len(captions) % group_size or len(captions) // group_size < 2:
        raise ValueError(f"group_size must divide the {len(captions)} pairs into at least 2 groups, got {group_size}")
    torch.manual_seed(seed)
    image_processor = image_processor or glyph_clip_image_processor()
    model = model or CLIPModel(glyph_clip_config(tokenizer, image_size=image_processor.crop_size["height"]))
    pixel_values = images_to_pixel_values(images, image_processor)
    text = tokenizer(list(captions), padding="max_length", truncation=True, return_tensors="pt")
    num_groups = len(captions) // group_size
    groups_per_batch = max(1, min(batch_size // group_size, num_groups))

    probes = torch.nn.ModuleDict({
        name: torch.nn.Linear(model.config.projection_dim, int(max(values)) + 1) for name, values in (labels or {}).items()
    })
    targets = {name: torch.as_tensor(list(values)) for name, values in (labels or {}).items()}
    for name, values in targets.items():
        if len(values) != len(captions):
            raise ValueError(f"labels[{name!r}] has {len(values)} entries for {len(captions)} pairs")
    parameters = [*model.parameters(), *probes.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=weight_decay)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, num_steps // 20), num_steps)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(num_groups, generator=generator)
    cursor = 0
    model.train()
    for step in range(num_steps):
        if cursor + groups_per_batch > len(order):
            order, cursor = torch.randperm(num_groups, generator=generator), 0
        chosen = order[cursor : cursor + groups_per_batch]
        cursor += groups_per_batch
        index = (chosen[:, None] * group_size + torch.arange(group_size)).flatten()
        out = model(
            input_ids=text.input_ids[index],
            attention_mask=text.attention_mask[index],
            pixel_values=pixel_values[index],
            return_loss=True,
        )
        loss = out.loss
        for name, probe in probes.items():
            for embeds in (out.image_embeds, out.text_embeds):
                logits = probe(embeds * PROBE_SCALE)
                loss = loss + label_weight / 2 * F.cross_entropy(logits, targets[name][index])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if log_every and (step % log_every == 0 or step == num_steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f} (contrastive {out.loss.item():.4f})", flush=True)
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


def hard_negative_groups(num_groups: int, seed: int = 0, split: str = "train") -> list[GlyphSpec]:
    """``num_groups`` glyph-world specs, each followed by one variant per :data:`HARD_NEGATIVE_ATTRIBUTES` that
    differs from it in that attribute alone (same jitter, same paper), ``len = num_groups * (1 + 3)``.

    A group's members are captioned from one caption seed, so their captions share a template. The variant value is
    drawn uniformly among :func:`~diffusion_canon.data.glyphs.alternatives` in ``split``.
    """
    specs = []
    for index, base in enumerate(glyph_specs(num_images=num_groups, seed=seed, split=split)):
        rng = np.random.default_rng([seed, _CAPTION_STREAM, index])
        caption_seed = [seed, _CAPTION_STREAM, index, 1]
        specs.append(recaption(base, caption_seed))
        for attribute in HARD_NEGATIVE_ATTRIBUTES:
            choices = alternatives(base, attribute, split)
            if not choices:
                attribute, choices = "font", alternatives(base, "font", split)
            specs.append(recaption(base, caption_seed, **{attribute: choices[rng.integers(len(choices))]}))
    return specs


def names_every_attribute(spec: GlyphSpec) -> bool:
    """Whether ``spec.caption`` says its character, ink colour, style and font (the glyph world's shortest template,
    "letter Q", and the unnamed regular style say less), so that an image differing in any of them is a wrong
    answer to it."""
    words = spec.caption.lower().replace(",", " ").split()
    style_named = spec.style != "regular" or "regular" in words or "plain" in words
    return spec.color in words and style_named and len(words) > 3


def _matches(query: GlyphSpec, image: GlyphSpec, judged: Sequence[str] = HARD_NEGATIVE_ATTRIBUTES) -> bool:
    """``image`` is a right answer to ``query``'s caption: the same ``judged`` attributes, and the same paper when the
    caption names it."""
    same = all(getattr(query, a) == getattr(image, a) for a in judged)
    paper = query.background.replace("-", " ")
    named_paper = f"on {paper}" in query.caption or f"on a {paper}" in query.caption
    return same and (image.background == query.background or not named_paper)


@torch.no_grad()
def hard_negative_retrieval(
    text_encoder: Any, image_encoder: Any, tokenizer: Any, image_processor: CLIPImageProcessor, num_queries: int = 200,
    seed: int = 1, split: str = "validation",
) -> dict[str, float]:
    """Top-1 text -> image retrieval with hard negatives, for a ``CLIPModel`` (pass it as both encoders) or split
    towers (``CLIPTextModelWithProjection``, ``CLIPVisionModelWithProjection``).

    Queries are :func:`hard_negative_groups` of ``split`` whose caption names every attribute
    (:func:`names_every_attribute`). The candidates are all the groups' images together: each query's own image, its
    three one-attribute variants, and every other group's. Scored by :func:`retrieval_scores`.
    """
    group = 1 + len(HARD_NEGATIVE_ATTRIBUTES)
    specs = hard_negative_groups(2 * num_queries, seed=seed, split=split)  # about 3 in 4 captions name everything
    queries = [start for start in range(0, len(specs), group) if names_every_attribute(specs[start])][:num_queries]
    size = image_processor.crop_size["height"]
    images = [Image.fromarray(render_glyph(spec, size)[size]) for spec in specs]
    image_embeds = torch.cat([encode_images(image_encoder, image_processor, images[i : i + 256])
                              for i in range(0, len(images), 256)])
    text_embeds = encode_prompts(text_encoder, tokenizer, [specs[q].caption for q in queries])[0]
    similarity = F.normalize(text_embeds, dim=-1) @ F.normalize(image_embeds, dim=-1).T
    return retrieval_scores(specs, queries, similarity)


def retrieval_scores(specs: Sequence[GlyphSpec], queries: Sequence[int], similarity: torch.Tensor) -> dict[str, float]:
    """Score the retrievals ``similarity.argmax(1)`` (Q, N) of the captions ``specs[q].caption`` among all ``specs``'
    images: right when the image has the caption's character, colour and style (what the hard negatives change) and
    its paper when the caption names it (:func:`_matches`). ``top1_with_font`` also asks for the caption's font, which
    no hard negative changes and which even the glyph classifier reads right for only about 4 in 5 real renderings.

    Returns:
        ``{"top1", "top1_with_font", "chance", "n", "candidates"}`` (``chance``: the expected top-1 of a uniform
        pick) and, per attribute, the share of queries whose retrieved image was wrong in it (``"wrong_character"``).
    """
    retrieved = similarity.argmax(dim=1).tolist()
    right = [_matches(specs[q], specs[r]) for q, r in zip(queries, retrieved)]
    with_font = [_matches(specs[q], specs[r], (*HARD_NEGATIVE_ATTRIBUTES, "font")) for q, r in zip(queries, retrieved)]
    chance = float(np.mean([np.mean([_matches(specs[q], s) for s in specs]) for q in queries]))
    scores = {"top1": float(np.mean(right)), "top1_with_font": float(np.mean(with_font)), "chance": chance,
              "n": len(queries), "candidates": len(specs)}
    for attribute in ("character", "color", "style", "font"):
        wrong = [getattr(specs[q], attribute) != getattr(specs[r], attribute) for q, r in zip(queries, retrieved)]
        scores[f"wrong_{attribute}"] = float(np.mean(wrong))
    return scores


def clip_config_from_args(tokenizer: Any, args: argparse.Namespace):
    """The ``CLIPConfig`` that ``diffusion-canon train-clip``'s parsed flags ask for."""
    return glyph_clip_config(
        tokenizer, image_size=args.resolution, patch_size=args.patch_size, projection_dim=args.projection_dim,
        hidden_size=args.hidden_size, num_layers=args.num_layers, vision_hidden_size=args.vision_hidden_size,
        vision_num_layers=args.vision_num_layers, vision_num_heads=args.vision_num_heads,
    )


def run(args: argparse.Namespace) -> int:
    from ..data.glyphs import CHARACTERS, COLORS, FONTS, STYLES, load_glyphs
    from ..data.tokenizer import build_glyph_tokenizer
    from ..training import write_model_card

    start = time.perf_counter()
    tokenizer = build_glyph_tokenizer(args.output_dir)
    processor = glyph_clip_image_processor(args.resolution)
    if args.hard_negatives:
        specs = hard_negative_groups(args.num_images, seed=args.seed)
        images = [Image.fromarray(render_glyph(spec, args.resolution)[args.resolution]) for spec in specs]
        group_size = 1 + len(HARD_NEGATIVE_ATTRIBUTES)
    else:
        specs = glyph_specs(num_images=args.num_images, seed=args.seed, split="train")
        images = list(load_glyphs(resolution=args.resolution, seed=args.seed, num_images=args.num_images)["image"])
        group_size = 1
    vocabularies = {"character": CHARACTERS, "color": tuple(COLORS), "style": STYLES, "font": FONTS}
    labels = {name: [names.index(getattr(spec, name)) for spec in specs] for name, names in vocabularies.items()}
    # a different seed draws fresh renderings (new attribute draws and jitter) that training never saw
    held_out = load_glyphs(resolution=args.resolution, seed=args.seed + 1, num_images=args.num_eval_images)
    config = clip_config_from_args(tokenizer, args)
    model = train_glyph_clip(
        images,
        [spec.caption for spec in specs],
        tokenizer,
        model=CLIPModel(config),
        image_processor=processor,
        num_steps=args.num_steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        log_every=100,
        group_size=group_size,
        labels=labels if args.label_weight else None,
        label_weight=args.label_weight,
    )
    train_seconds = round(time.perf_counter() - start, 1)
    metrics = {
        "hard_negatives": hard_negative_retrieval(model, model, tokenizer, processor, num_queries=args.num_eval_images,
                                                  seed=args.seed + 1),
        "random_pairs": text_to_image_retrieval(model, tokenizer, list(held_out["image"]), list(held_out["caption"]),
                                                processor),
        "train_seconds": train_seconds,
    }
    model.save_pretrained(args.output_dir)  # safetensors
    processor.save_pretrained(args.output_dir)
    with open(os.path.join(args.output_dir, "retrieval.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    write_model_card(
        args.output_dir, "unclip_clip", base_model=None, tags=["clip", "unclip"], metrics=metrics,
        config=model.config.to_dict(), num_images=len(specs), num_steps=args.num_steps,
        hard_negatives=args.hard_negatives, label_weight=args.label_weight,
    )
    print(json.dumps(metrics))
    return 0
