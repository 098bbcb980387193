"""The flags of the Stable Diffusion fine-tuning scripts (DreamBooth, LoRA, textual inversion) beyond the training
core's: the base model and its images, LoRA's rank, and their checks. Names follow the diffusers examples."""

from __future__ import annotations

import argparse
import logging

from ..training.arguments import add_diffusion_loss_args
from .lora import UNET_TARGETS

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
    group.add_argument("--lora_layers", type=_module_names, default=UNET_TARGETS,
                       help="Comma-separated names of the UNet layers to adapt, matched as suffixes of module names "
                            f"(peft's target_modules; default: the attention projections {','.join(UNET_TARGETS)}). "
                            'Add "conv1,conv2" for the ResNet convolutions, "proj_in,proj_out,ff.net.0.proj,ff.net.2" '
                            "for the rest of the transformer blocks.")


def _module_names(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated module names like 'to_q,conv1', got {value!r}")
    return names


def check_sd_args(args: argparse.Namespace) -> None:
    if args.resolution < 8 or args.resolution % 8:
        raise ValueError(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if args.cache_latents and (args.random_flip or not args.center_crop):
        logger.warning("--cache_latents encodes each image once: random crops/flips are drawn once, not per epoch")
