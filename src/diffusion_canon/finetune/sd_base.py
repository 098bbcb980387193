"""Stable-Diffusion-format bases: loading one (Hub id or local folder) for fine-tuning, directly or as the scripts'
``--pretrained_model_name_or_path`` / ``--revision`` / ``--variant`` name it, and building a tiny random one.

The SD layout is ``model_index.json`` plus the subfolders ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` and
``scheduler``; the fine-tuning scripts accept any base in that layout.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

SD_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


@dataclass
class SDComponents:
    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: AutoencoderKL
    unet: UNet2DConditionModel
    noise_scheduler: DDPMScheduler

    def pipeline(self) -> StableDiffusionPipeline:
        """A pipeline sharing these modules (no copy), for validation and class-image sampling."""
        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=self.noise_scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )


def check_sd_layout(path: str) -> None:
    """Raise ``ValueError`` when a local folder is not in Stable Diffusion layout (Hub ids are checked on download)."""
    if not os.path.isdir(path):
        if os.path.exists(path) or path.startswith((".", "/")) or path.count("/") > 1:
            raise ValueError(f"--pretrained_model_name_or_path {path!r} is neither a folder nor a Hub id")
        return
    missing = [name for name in ("model_index.json", *SD_SUBFOLDERS) if not os.path.exists(os.path.join(path, name))]
    if missing:
        raise ValueError(
            f"--pretrained_model_name_or_path {path!r} is not in Stable Diffusion layout: missing {missing} "
            f"(expected model_index.json and the subfolders {list(SD_SUBFOLDERS)})"
        )


def load_sd_components(path: str, revision: str | None = None, variant: str | None = None) -> SDComponents:
    """Load the five components of an SD-format base in fp32 (callers cast the frozen ones to the run's dtype)."""
    check_sd_layout(path)
    kwargs = {"revision": revision}
    return SDComponents(
        tokenizer=CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", revision=revision),
        text_encoder=CLIPTextModel.from_pretrained(path, subfolder="text_encoder", variant=variant, **kwargs),
        vae=AutoencoderKL.from_pretrained(path, subfolder="vae", variant=variant, **kwargs),
        unet=UNet2DConditionModel.from_pretrained(path, subfolder="unet", variant=variant, **kwargs),
        noise_scheduler=DDPMScheduler.from_pretrained(path, subfolder="scheduler", **kwargs),
    )


def load_base(args: argparse.Namespace) -> SDComponents:
    """Load ``--pretrained_model_name_or_path`` in fp32 (a folder not in SD layout is a ``ValueError``) and apply
    ``--prediction_type``."""
    base = load_sd_components(args.pretrained_model_name_or_path, args.revision, args.variant)
    if args.prediction_type:
        base.noise_scheduler.register_to_config(prediction_type=args.prediction_type)
    return base


def base_pipeline(args, dtype: torch.dtype, **components: torch.nn.Module) -> StableDiffusionPipeline:
    """The base as a pipeline in ``dtype`` (from ``--pretrained_model_name_or_path``, ``--revision``, ``--variant``),
    with any of its components replaced by ``components``."""
    return StableDiffusionPipeline.from_pretrained(
        args.pretrained_model_name_or_path, revision=args.revision, variant=args.variant, dtype=dtype,
        safety_checker=None, requires_safety_checker=False, **components,
    )


def build_word_tokenizer(output_dir: str, words: Iterable[str], model_max_length: int = 16) -> CLIPTokenizer:
    """A CLIP-format BPE tokenizer whose merges spell each word of ``words`` as one token; other text falls back to
    single characters. Built offline in milliseconds, for tests and tiny bases."""
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789") | set("".join(words)))
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [*chars, *(c + "</w>" for c in chars)]:
        vocab.setdefault(token, len(vocab))
    merges: dict[str, None] = {}
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:  # merge left to right: "sks" -> s k s</w> -> sk s</w> -> sks</w>
            merges[f"{pieces[0]} {pieces[1]}"] = None
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(output_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        os.path.join(output_dir, "vocab.json"), os.path.join(output_dir, "merges.txt"),
        model_max_length=model_max_length,
    )


def tiny_sd_components(tokenizer: CLIPTokenizer, sample_size: int = 8, seed: int = 0) -> SDComponents:
    """Randomly initialised SD components at toy size (VAE 4x downsampling, 2-level UNet, 2-layer CLIP text model):
    ``sample_size`` is the latent size, images are ``4 * sample_size`` pixels."""
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        projection_dim=32,
    ))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        norm_num_groups=8, sample_size=4 * sample_size,
    )
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
    )
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                              num_train_timesteps=1000, clip_sample=False)
    return SDComponents(tokenizer, text_encoder, vae, unet, scheduler)


def save_sd_base(components: SDComponents, output_dir: str, dtype: torch.dtype | None = None) -> None:
    """Save the components as a ``StableDiffusionPipeline`` folder (safetensors; ``dtype`` e.g. fp16 to ship)."""
    pipeline = components.pipeline()
    if dtype is not None:
        pipeline.to(dtype=dtype)
    pipeline.save_pretrained(output_dir, safe_serialization=True)


TINY_WORDS = ("a", "sks", "font", "letter", "digit", "the", "in", "photo", "of", "style", "bold", "serif", "sans",
              "mono", "red", "blue", "green", "black")


def save_tiny_sd_base(output_dir: str, words: Iterable[str] = TINY_WORDS, sample_size: int = 8, seed: int = 0) -> str:
    """Write a random tiny SD-format base (images ``4 * sample_size`` pixels) to ``output_dir``; for tests."""
    tokenizer = build_word_tokenizer(os.path.join(output_dir, "_vocab"), list(words))
    save_sd_base(tiny_sd_components(tokenizer, sample_size=sample_size, seed=seed), output_dir)
    return output_dir


def training_modules(unet: torch.nn.Module, text_encoder: torch.nn.Module, train_text_encoder: bool) -> tuple:
    """The modules a fine-tuning step trains (the text encoder too with ``train_text_encoder``), in training mode:
    ``from_pretrained`` returns eval mode, and dropout (if the base has any) belongs to training."""
    modules = (unet, text_encoder) if train_text_encoder else (unet,)
    for module in modules:
        module.train()
    return modules
