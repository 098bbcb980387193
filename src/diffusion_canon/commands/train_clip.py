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
    parser.add_argument("--vision_hidden_size", type=int, default=None, help="width of the vision tower (default: "
                        "--hidden_size)")
    parser.add_argument("--vision_num_layers", type=int, default=None, help="depth of the vision tower (default: "
                        "--num_layers)")
    parser.add_argument("--vision_num_heads", type=int, default=None, help="attention heads of the vision tower")
    parser.add_argument("--patch_size", type=int, default=4, help="ViT patch side in pixels")
    parser.add_argument("--hard_negatives", action="store_true", help="train on hard_negative_groups: every image "
                        "with three variants that differ in character, colour or style alone, kept in one batch "
                        "(--num_images groups, 4x as many pairs)")
    parser.add_argument("--label_weight", type=float, default=0.0, help="weight of the attribute probes' "
                        "cross-entropy (character, colour, style, font) on both embeddings; 0 = plain CLIP")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..clip.training import run

    return run(args)
