"""What the three fine-tuning scripts share beyond the training core: their flags, prompt encoding (with a cache for
a frozen text encoder), the latent-diffusion prediction of one batch, validation sampling and class-image generation."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence

import torch
from accelerate import Accelerator
from PIL import Image

from ..training.arguments import add_diffusion_loss_args
from .base import SDComponents, load_sd_components
from .data import list_images
from .loss import add_training_noise, encode_latents, prediction_target

logger = logging.getLogger(__name__)


def add_sd_args(parser: argparse.ArgumentParser) -> None:
    """Base-model and image flags of the Stable Diffusion fine-tuning scripts (diffusers-example names)."""
    group = parser.add_argument_group("base model and images")
    group.add_argument("--pretrained_model_name_or_path", required=True, help="SD-format base: Hub id or folder.")
    group.add_argument("--revision", default=None)
    group.add_argument("--variant", default=None, help='Weight variant of the base, e.g. "fp16".')
    group.add_argument("--resolution", type=int, default=512)
    group.add_argument("--center_crop", action="store_true", help="Center crop (default: random crop).")
    group.add_argument("--random_flip", action="store_true")
    group.add_argument("--repeats", type=int, default=1, help="Repeat the training images this often per epoch.")
    group.add_argument("--cache_latents", action="store_true",
                       help="Encode every image once with the VAE, even with random crops/flips (which are then "
                            "drawn once). DreamBooth and textual inversion do this by themselves when the transform "
                            "is deterministic (--center_crop without --random_flip): the training is the same, only "
                            "faster. Prompts are encoded once while the text encoder is frozen.")
    add_diffusion_loss_args(parser)


def add_lora_args(parser: argparse.ArgumentParser, default_rank: int = 4) -> None:
    group = parser.add_argument_group("LoRA (Hu et al. 2021)")
    group.add_argument("--rank", type=int, default=default_rank, help="LoRA rank r of W' = W + (alpha / r) B A.")
    group.add_argument("--lora_alpha", type=float, default=None, help="LoRA alpha (default: the rank, scale 1).")


def check_sd_args(args: argparse.Namespace) -> None:
    if args.resolution < 8 or args.resolution % 8:
        raise ValueError(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.cache_latents and (args.random_flip or not args.center_crop):
        logger.warning("--cache_latents encodes each image once: random crops/flips are drawn once, not per epoch")


def load_base(args: argparse.Namespace) -> SDComponents:
    """Load ``--pretrained_model_name_or_path`` in fp32 (a folder not in SD layout is a ``ValueError``) and apply
    ``--prediction_type``."""
    base = load_sd_components(args.pretrained_model_name_or_path, args.revision, args.variant)
    if args.prediction_type:
        base.noise_scheduler.register_to_config(prediction_type=args.prediction_type)
    return base


class PromptEncoder:
    """Token ids -> text-encoder hidden states (B, L, D). While the text encoder is frozen the states of each prompt
    are computed once and reused (the ``--cache_latents`` counterpart for text)."""

    def __init__(self, tokenizer, text_encoder: torch.nn.Module, cache: bool) -> None:
        self.tokenizer, self.text_encoder, self.cache = tokenizer, text_encoder, cache
        self._cached: dict[str, torch.Tensor] = {}

    def token_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids

    def __call__(self, prompts: Sequence[str], device: torch.device) -> torch.Tensor:
        if not self.cache:
            return self.text_encoder(self.token_ids(prompts).to(device))[0]
        missing = sorted(set(prompts) - set(self._cached))
        if missing:
            with torch.no_grad():
                states = self.text_encoder(self.token_ids(missing).to(device))[0]
            self._cached.update(zip(missing, states))
        return torch.stack([self._cached[p] for p in prompts])


def predict_batch(
    batch: dict, components: SDComponents, unet: torch.nn.Module, encode_prompts: PromptEncoder,
    noise_offset: float = 0.0, unet_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One latent-diffusion forward pass: (model prediction, target, timesteps), predictions of shape (B, C, h, w).
    ``unet_dtype`` is the dtype of the UNet's frozen weights (fp32 when the whole UNet trains)."""
    latents = encode_latents(batch, components.vae)
    noisy, noise, timesteps = add_training_noise(latents, components.noise_scheduler, noise_offset)
    hidden_states = encode_prompts(batch["prompts"], latents.device)
    model_pred = unet(noisy.to(unet_dtype), timesteps, hidden_states.to(unet_dtype)).sample
    return model_pred, prediction_target(components.noise_scheduler, latents, noise, timesteps), timesteps


def validation_images(make_pipeline: Callable[[], object], prompt: str, args: argparse.Namespace) -> list[Image.Image]:
    """``--num_validation_images`` samples of ``prompt``, seeded by ``--seed`` so every round is comparable."""
    num_images = args.num_validation_images
    pipeline = make_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(args.seed or 0)
    return pipeline(
        [prompt] * num_images, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
        height=args.resolution, width=args.resolution, generator=generator,
    ).images


def generate_class_images(
    accelerator: Accelerator, make_pipeline: Callable[[], object], class_data_dir: str, class_prompt: str,
    num_class_images: int, sample_batch_size: int, args: argparse.Namespace,
) -> None:
    """Fill ``class_data_dir`` up to exactly ``num_class_images`` images sampled from the base with ``class_prompt``.

    Missing image k goes to process k mod P (file ``class-<k>.png``, its own seed), so P processes write exactly the
    missing count with no duplicates (the diffusers example pads the last batch per process: 6 images for 5 on 2
    processes). Every process waits at a barrier until the folder is complete.
    """
    if accelerator.is_main_process:
        os.makedirs(class_data_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    existing = len(list_images(class_data_dir, "class_data_dir", allow_empty=True))
    accelerator.wait_for_everyone()  # every process has counted before any writes
    missing = list(range(existing, num_class_images))[accelerator.process_index :: accelerator.num_processes]
    if missing:
        logger.info("sampling %d class images for %r", len(missing), class_prompt)
        pipeline = make_pipeline()
        pipeline.set_progress_bar_config(disable=True)
        for start in range(0, len(missing), sample_batch_size):
            chunk = missing[start : start + sample_batch_size]
            generators = [torch.Generator("cpu").manual_seed((args.seed or 0) * 100_003 + k) for k in chunk]
            images = pipeline(
                [class_prompt] * len(chunk), num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale, height=args.resolution, width=args.resolution,
                generator=generators,
            ).images
            for k, image in zip(chunk, images):
                image.save(os.path.join(class_data_dir, f"class-{k:05d}.png"))
        del pipeline
    accelerator.wait_for_everyone()
