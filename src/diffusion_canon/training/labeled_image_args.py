"""The data flags of ``train_adm.py`` and ``train_classifier.py``, and the :func:`load_labeled_images` keywords they
give: the flags live with the scripts' other argument groups, the loader takes plain values."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_labeled_image_args", "labeled_image_options"]


def add_labeled_image_args(parser: argparse.ArgumentParser, resolution: int = 32) -> None:
    """Data flags shared by ``train_adm.py`` and ``train_classifier.py``."""
    group = parser.add_argument_group("data (default: the glyph world)")
    group.add_argument("--dataset_name", default=None, help="A datasets dataset: Hub id or save_to_disk folder.")
    group.add_argument("--train_data_dir", default=None, help="Image folder, one sub-folder per class.")
    group.add_argument("--image_column", default="image")
    group.add_argument("--label_column", default="label")
    group.add_argument("--resolution", type=int, default=resolution)
    group.add_argument("--random_flip", action="store_true",
                       help="Horizontal flips (never for glyphs: 'E' ≠ mirrored 'E').")
    group.add_argument("--characters", default="0123456789", help="Glyph world: the classes, e.g. 0-9A-Z as a string.")
    group.add_argument("--colors", default=None, help="Glyph world: ink colours, comma-separated (default: all).")
    group.add_argument("--backgrounds", default=None,
                       help="Glyph world: paper colours, comma-separated (default: all).")
    group.add_argument("--num_images", type=int, default=5000, help="Glyph world: renders of split='train'.")
    group.add_argument("--data_seed", type=int, default=0, help="Glyph world: render seed.")


def labeled_image_options(args: argparse.Namespace) -> dict[str, Any]:
    """``load_labeled_images(**labeled_image_options(args))`` loads what the flags name; ``--colors`` and
    ``--backgrounds`` are split at commas. ``--image_column``, ``--label_column`` and ``--random_flip`` are read
    by the scripts themselves (they choose columns and transforms, not the source)."""
    return {
        "dataset_name": args.dataset_name,
        "train_data_dir": args.train_data_dir,
        "resolution": args.resolution,
        "characters": args.characters,
        "colors": _names(args.colors),
        "backgrounds": _names(args.backgrounds),
        "num_images": args.num_images,
        "data_seed": args.data_seed,
    }


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]
