"""Class-labelled image data for the ADM and noisy-classifier training scripts.

Three sources, one shape: the glyph world (the default), an image folder whose sub-folders are the classes (the
``datasets`` "imagefolder" builder turns ``cat/1.png`` into label "cat"), or any ``datasets`` dataset (a Hub id or a
``save_to_disk`` folder) with an image column and a label column. Labels are mapped to contiguous indices 0 … K−1 with
names, so the trained model's ``class_names`` say what each index means. The flags that choose the source are
:mod:`diffusion_canon.training.labeled_image_args`; this module takes plain values.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .glyphs import CHARACTERS, load_glyphs


def load_labeled_images(
    *,
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    split: str = "train",
    resolution: int = 32,
    characters: str = "0123456789",
    colors: Sequence[str] | None = None,
    backgrounds: Sequence[str] | None = None,
    num_images: int = 5000,
    data_seed: int = 0,
):
    """A ``datasets.Dataset`` of class-labelled images: an image folder, a ``datasets`` dataset or the glyph world.

    Each parameter is the training scripts' flag of the same name (``training/labeled_image_args.py``), so errors
    name the flag. At most one of ``train_data_dir`` (one sub-folder per class) and ``dataset_name`` (a Hub id or a
    ``save_to_disk`` folder, which is loaded whole, whatever ``split``); with neither, ``num_images`` glyph-world
    renders of ``split`` at ``resolution``: the classes ``characters`` (a string, e.g. ``"0123456789"``), ink
    ``colors`` and paper ``backgrounds`` (names; None = all), drawn with ``data_seed``.
    """
    import datasets

    if train_data_dir and dataset_name:
        raise ValueError(f"pass --train_data_dir or --dataset_name, not both (got {train_data_dir!r} and "
                         f"{dataset_name!r})")
    if train_data_dir:
        if not os.path.isdir(train_data_dir):
            raise ValueError(f"--train_data_dir {train_data_dir!r} is not an existing folder")
        return datasets.load_dataset("imagefolder", data_dir=train_data_dir, split=split)
    if dataset_name:
        if os.path.isdir(dataset_name) and os.path.isfile(os.path.join(dataset_name, "dataset_info.json")):
            return datasets.load_from_disk(dataset_name)
        try:
            return datasets.load_dataset(dataset_name, split=split)
        except Exception as error:  # the datasets library raises a zoo of types for "not found"
            raise ValueError(f"--dataset_name {dataset_name!r} could not be loaded: {error}") from error
    unknown = sorted(set(characters) - set(CHARACTERS))
    if unknown or not characters:
        raise ValueError(f"--characters {characters!r}: unknown characters {unknown}; "
                         f"allowed: {''.join(CHARACTERS)}")
    return load_glyphs(resolution, seed=data_seed, split=split, characters=characters, colors=colors,
                       backgrounds=backgrounds, num_images=num_images)


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
