"""Class-labelled image data for the ADM and noisy-classifier training scripts.

Three sources, one shape: the glyph world (the default), an image folder whose sub-folders are the classes (the
``datasets`` "imagefolder" builder turns ``cat/1.png`` into label "cat"), or any ``datasets`` dataset (a Hub id or a
``save_to_disk`` folder) with an image column and a label column. Labels are mapped to contiguous indices 0 … K−1 with
names, so the trained model's ``class_names`` say what each index means.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .glyphs import CHARACTERS, load_glyphs


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


def load_labeled_images(args: argparse.Namespace, split: str = "train"):
    """The ``datasets.Dataset`` the flags name: ``--train_data_dir``, ``--dataset_name`` or the glyph world."""
    import datasets

    if args.train_data_dir and args.dataset_name:
        raise ValueError(f"pass --train_data_dir or --dataset_name, not both (got {args.train_data_dir!r} and "
                         f"{args.dataset_name!r})")
    if args.train_data_dir:
        if not os.path.isdir(args.train_data_dir):
            raise ValueError(f"--train_data_dir {args.train_data_dir!r} is not an existing folder")
        return datasets.load_dataset("imagefolder", data_dir=args.train_data_dir, split=split)
    if args.dataset_name:
        if os.path.isdir(args.dataset_name) and os.path.isfile(os.path.join(args.dataset_name, "dataset_info.json")):
            return datasets.load_from_disk(args.dataset_name)
        try:
            return datasets.load_dataset(args.dataset_name, split=split)
        except Exception as error:  # the datasets library raises a zoo of types for "not found"
            raise ValueError(f"--dataset_name {args.dataset_name!r} could not be loaded: {error}") from error
    unknown = sorted(set(args.characters) - set(CHARACTERS))
    if unknown or not args.characters:
        raise ValueError(f"--characters {args.characters!r}: unknown characters {unknown}; "
                         f"allowed: {''.join(CHARACTERS)}")
    return load_glyphs(args.resolution, seed=args.data_seed, split=split, characters=args.characters,
                       colors=_names(args.colors), backgrounds=_names(args.backgrounds), num_images=args.num_images)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def class_labels(dataset, label_column: str) -> tuple[list[int], list[str]]:
    """Contiguous class indices ``(N,)`` and one name per index, from a ``ClassLabel``, int or string column.

    Only classes that occur are kept (digits of the glyph world's 36-name ``ClassLabel`` become 0 … 9), in the order
    of the original label ids (or sorted names for a string column)."""
    import datasets

    if label_column not in dataset.column_names:
        raise ValueError(f"--label_column {label_column!r} is not a column of the dataset; "
                         f"columns: {dataset.column_names}")
    raw = list(dataset[label_column])
    feature = dataset.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        used = sorted(set(raw))
        names = [feature.names[i] for i in used]
    elif all(isinstance(value, str) for value in raw):
        used = names = sorted(set(raw))
    elif all(isinstance(value, int) and not isinstance(value, bool) for value in raw):
        used = sorted(set(raw))
        names = [str(value) for value in used]
    else:
        raise ValueError(f"--label_column {label_column!r} must hold class ids or names, got {type(raw[0]).__name__}")
    index = {value: i for i, value in enumerate(used)}
    return [index[value] for value in raw], names


class LabeledImages(Dataset):
    """``{"pixel_values": (3, H, W) in [-1, 1], "class_labels": int64}`` per example; decoded and transformed lazily."""

    def __init__(self, dataset, image_column: str, labels: Sequence[int], transform: Callable) -> None:
        if image_column not in dataset.column_names:
            raise ValueError(f"--image_column {image_column!r} is not a column of the dataset; columns: "
                             f"{dataset.column_names}")
        self.images = dataset.select_columns([image_column])
        self.image_column, self.labels, self.transform = image_column, torch.tensor(labels), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index][self.image_column].convert("RGB")
        return {"pixel_values": self.transform(image), "class_labels": self.labels[index]}
