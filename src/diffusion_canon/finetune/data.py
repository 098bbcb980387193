"""Fine-tuning data: image folders (non-image files skipped with a warning, optional ``metadata.jsonl`` captions),
prompt datasets, the DreamBooth instance/class pairing, and the collate function that puts class examples in the
second half of each batch."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def list_images(folder: str, argument: str = "data_dir", allow_empty: bool = False) -> list[str]:
    """Sorted image paths in ``folder``; other files (``.DS_Store``, ``metadata.jsonl``, ...) are skipped with a
    warning. A missing folder, or one with no image (unless ``allow_empty``), is a ``ValueError`` naming the flag."""
    if not folder or not os.path.isdir(folder):
        raise ValueError(f"--{argument} {folder!r} is not an existing folder")
    names = sorted(os.listdir(folder))
    images = [n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
    skipped = [n for n in names if n not in images and n != "metadata.jsonl"]
    if skipped:
        logger.warning("--%s %s: skipping %d non-image file(s): %s", argument, folder, len(skipped), skipped[:5])
    if not images and not allow_empty:
        raise ValueError(f"--{argument} {folder!r} contains no image files (extensions: png, jpg, webp, ...)")
    return [os.path.join(folder, n) for n in images]


def read_captions(folder: str, caption_column: str = "text") -> dict[str, str]:
    """``file_name -> caption`` from ``folder/metadata.jsonl`` (the datasets "imagefolder" format), or ``{}``."""
    path = os.path.join(folder, "metadata.jsonl")
    if not os.path.isfile(path):
        return {}
    captions = {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                if "file_name" not in record or caption_column not in record:
                    raise ValueError(f"{path}:{line_number} needs the keys 'file_name' and {caption_column!r}")
                captions[record["file_name"]] = record[caption_column]
    return captions


class PromptedImages(Dataset):
    """``{"pixel_values": (3, H, W), "prompt": str}`` for each (image path, prompt) pair."""

    def __init__(self, paths: Sequence[str], prompts: Sequence[str], transform: Callable) -> None:
        if len(paths) != len(prompts):
            raise ValueError(f"{len(paths)} images but {len(prompts)} prompts")
        self.paths, self.prompts, self.transform = list(paths), list(prompts), transform

    def __len__(self) -> int:
        return len(self.paths)

    def prompt(self, index: int) -> str:
        return self.prompts[index]

    def __getitem__(self, index: int) -> dict:
        with Image.open(self.paths[index]) as image:
            return {"pixel_values": self.transform(image), "prompt": self.prompt(index)}


@dataclass
class Concept:
    """One DreamBooth subject: its images and prompt, and (with prior preservation) its class folder and prompt."""

    instance_data_dir: str
    instance_prompt: str
    class_data_dir: str | None = None
    class_prompt: str | None = None


def instance_examples(concepts: Sequence[Concept], repeats: int = 1) -> tuple[list[str], list[str]]:
    """Image paths and prompts of all concepts, each image ``repeats`` times; a ``metadata.jsonl`` caption
    overrides the concept's instance prompt for its image."""
    paths, prompts = [], []
    for concept in concepts:
        captions = read_captions(concept.instance_data_dir)
        for path in list_images(concept.instance_data_dir, "instance_data_dir"):
            paths += [path] * repeats
            prompts += [captions.get(os.path.basename(path), concept.instance_prompt)] * repeats
    return paths, prompts


class PriorPreservationPairs(Dataset):
    """Pairs each instance example with a class example (cycling the shorter list), as in the DreamBooth paper:
    the loss sees the subject and the model's own class samples in every batch."""

    def __init__(self, instances: Dataset, classes: Dataset) -> None:
        self.instances, self.classes = instances, classes

    def __len__(self) -> int:
        return max(len(self.instances), len(self.classes))

    def __getitem__(self, index: int) -> dict:
        return {"instance": self.instances[index % len(self.instances)],
                "class": self.classes[index % len(self.classes)]}


def collate(examples: list[dict]) -> dict:
    """Stack examples into ``{"pixel_values" or "latents": (B, ...), "prompts": [str] * B}``; with prior
    preservation pairs, the class examples form the second half of the batch (B = 2 x batch size)."""
    if "instance" in examples[0]:
        examples = [e["instance"] for e in examples] + [e["class"] for e in examples]
    key = "pixel_values" if "pixel_values" in examples[0] else "latent_parameters"
    return {key: torch.stack([e[key] for e in examples]), "prompts": [e["prompt"] for e in examples]}


class CachedLatents(Dataset):
    """Each image encoded once by the VAE (``--cache_latents``, or automatically for a deterministic transform); the
    posterior parameters (mean and log-variance, (2C, h, w)) are stored, so each step still draws a fresh latent
    sample z ~ N(mean, var) from the same RNG as without caching."""

    def __init__(self, dataset: PromptedImages, vae: torch.nn.Module, batch_size: int = 8) -> None:
        self.dataset = dataset
        device, dtype = vae.device, vae.dtype
        parameters = []
        with torch.no_grad():
            for start in range(0, len(dataset), batch_size):
                indices = range(start, min(start + batch_size, len(dataset)))
                pixels = torch.stack([dataset[i]["pixel_values"] for i in indices])
                parameters.append(vae.encode(pixels.to(device, dtype)).latent_dist.parameters.float().cpu())
        self.parameters = torch.cat(parameters)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {"latent_parameters": self.parameters[index], "prompt": self.dataset.prompt(index)}


class CaptionedRecords(Dataset):
    """``{"pixel_values", "prompt"}`` from a ``datasets.Dataset`` with an image and a caption column."""

    def __init__(self, records, image_column: str, caption_column: str, transform: Callable) -> None:
        for column in (image_column, caption_column):
            if column not in records.column_names:
                raise ValueError(f"column {column!r} not in the dataset; its columns are {records.column_names}")
        self.records, self.image_column, self.caption_column, self.transform = (
            records, image_column, caption_column, transform)
        self.prompts = list(records[caption_column])

    def __len__(self) -> int:
        return len(self.records)

    def prompt(self, index: int) -> str:
        return self.prompts[index]

    def __getitem__(self, index: int) -> dict:
        return {"pixel_values": self.transform(self.records[index][self.image_column]), "prompt": self.prompt(index)}


def captioned_images(
    train_data_dir: str | None, dataset_name: str | None, transform: Callable, image_column: str = "image",
    caption_column: str = "text", repeats: int = 1,
) -> Dataset:
    """An image-caption dataset: a folder whose ``metadata.jsonl`` gives every image a caption (``file_name`` +
    ``caption_column``), or a ``datasets`` dataset (Hub id or local path, split "train")."""
    if (train_data_dir is None) == (dataset_name is None):
        raise ValueError(f"pass exactly one of --train_data_dir and --dataset_name, got {train_data_dir!r} and "
                         f"{dataset_name!r}")
    if dataset_name is not None:
        import datasets

        records = datasets.load_dataset(dataset_name, split="train")
        if repeats > 1:
            records = datasets.concatenate_datasets([records] * repeats)
        return CaptionedRecords(records, image_column, caption_column, transform)
    paths = list_images(train_data_dir, "train_data_dir")
    captions = read_captions(train_data_dir, caption_column)
    uncaptioned = [os.path.basename(p) for p in paths if os.path.basename(p) not in captions]
    if uncaptioned:
        raise ValueError(f"--train_data_dir {train_data_dir!r}: no {caption_column!r} caption in metadata.jsonl for "
                         f"{len(uncaptioned)} image(s), e.g. {uncaptioned[:3]}")
    paths = [p for p in paths for _ in range(repeats)]
    return PromptedImages(paths, [captions[os.path.basename(p)] for p in paths], transform)
