"""``diffusion-canon make-base``: its arguments; the work is :func:`diffusion_canon.finetune.make_base.run`."""

from __future__ import annotations

import argparse

DESCRIPTION = "Train the tiny Stable-Diffusion-format glyph model the fine-tuning demos start from."


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("make-base", description=DESCRIPTION)
    parser.add_argument("--output_dir", default="pipelines/tiny-sd-glyphs")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--num_images", type=int, default=5000, help="Training images from the glyph world.")
    parser.add_argument("--held_out_style_images", type=int, default=0, help="renders of the held-out style "
                        "(outline) in the training fonts added to the data; 0 keeps the held-out styles unseen")
    parser.add_argument("--held_out_style_word", default="", help="the one word their captions name the style by "
                        "(one of the glyph world's words for it: hollow or outlined); '' (default): none, the "
                        "captions never name it")
    parser.add_argument("--held_out_style_stages", default="both", choices=("both", "vae"), help="which stages "
                        "train on those renders: both, or the VAE only, so its latent space can hold an outline "
                        "while the UNet's data stays the train split")
    parser.add_argument("--vae_steps", type=int, default=2000)
    parser.add_argument("--unet_steps", type=int, default=8000)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--kl_weight", type=float, default=1e-4)
    parser.add_argument("--vae_ink_weight", type=float, default=3.0, help="extra L1 weight on ink pixels; 0 (plain "
                        "L1) lets the VAE lose the ink colour")
    parser.add_argument("--lr_scheduler", default="cosine", choices=("constant_with_warmup", "cosine"),
                        help="learning-rate schedule of both stages (diffusers.optimization); the UNet warms up for "
                        "100 steps. A constant rate lets the VAE's ink hues drift late in training")
    parser.add_argument("--text_encoder_path", default=None, help="folder of a CLIPTextModel (safetensors) to "
                        "condition on, frozen; default: a tiny one trained from scratch with the UNet")
    parser.add_argument("--caption_dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="fp16", choices=("bf16", "fp16", "fp32"), help="Dtype of the saved weights.")
    parser.add_argument("--num_inference_steps", type=int, default=25, help="Steps of the model card's samples.")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from ..finetune.make_base import run

    return run(args)
