"""``diffusion-canon train-clip``: its arguments; the work is :func:`diffusion_canon.clip.training.run`."""

from __future__ import annotations

import argparse

DESCRIPTION = """Train the tiny glyph CLIP contrastively on the glyph world and report its text -> image retrieval.

Saves a folder that CLIPModel, CLIPTokenizer and CLIPImageProcessor .from_pretrained(DIR) all load."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``diffusion-canon train-clip``."""
    parser = subparsers.add_parser(
        "train-clip",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output_dir", required=True, help="folder for the CLIP model, tokenizer and processor")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--num_images", type=int, default=4096, help="training images from load_glyphs(split='train')")
    parser.add_argument("--num_eval_images", type=int, default=100, help="held-out retrieval batch size N")
    parser.add_argument("--num_steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--projection_dim", type=int, default=32)
    parser.add_argument("--hidden_size", type=int, default=64, help="width of both towers")
    parser.add_argument("--num_layers", type=int, default=2, help="depth of both towers")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..clip.training import run

    return run(args)
