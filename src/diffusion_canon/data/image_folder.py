"""Any folder of the user's images as a ``datasets.Dataset``, through the ``datasets`` "imagefolder" builder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import datasets

__all__ = ["load_image_folder"]

_METADATA_FILES = ("metadata.jsonl", "metadata.csv", "metadata.parquet")
_CAPTION_COLUMNS = ("caption", "text")  # what we look for in the metadata when caption_column is None


def load_image_folder(
    path: str | os.PathLike,
    resolution: int | None = None,
    caption_column: str | None = None,
    split: str = "train",
    cache_dir: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Load every image under ``path`` (recursively) with optional captions.

    Captions come from a ``metadata.jsonl`` (or .csv / .parquet) next to the images, one row per image with a
    ``file_name`` relative to it, the format of ``datasets``' "imagefolder"; its ``caption`` or ``text`` column (or
    ``caption_column``) becomes the ``caption`` column. Without metadata and with images in class subfolders,
    "imagefolder" adds a ``label`` column from the folder names. Files that are not readable images are skipped with
    one warning naming them; dot-files are ignored.

    Args:
        path: the folder.
        resolution: when given, every image is converted to RGB, its shorter side resized to ``resolution``
            (Lanczos) and centre-cropped to a square.
        caption_column: the metadata column holding the captions (default: ``caption``, else ``text``).
        split: the name of the returned split.
        cache_dir: where ``datasets`` keeps its Arrow cache (its default otherwise).

    Returns:
        ``datasets.Dataset`` with an ``image`` column (PIL), ``caption`` when the metadata has one, and any other
        metadata columns.
    """
    import datasets

    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"path {str(path)!r} does not exist; pass a folder of images")
    if not folder.is_dir():
        raise NotADirectoryError(f"path {str(path)!r} is a file; pass the folder that holds the images")
    if resolution is not None and (not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 8):
        raise ValueError(f"resolution must be None or an int >= 8, got {resolution!r}")
    images, metadata, skipped = _scan(folder)
    if skipped:
        shown = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
        warnings.warn(f"load_image_folder skipped {len(skipped)} file(s) that are not readable images: {shown}")
    if not images:
        raise ValueError(f"path {str(path)!r} holds no readable images (extensions: {sorted(_image_extensions())})")

    dataset = datasets.load_dataset(
        "imagefolder", data_files={split: images + metadata}, split=split, cache_dir=cache_dir
    )
    if skipped and metadata:  # "imagefolder" makes a row of every metadata entry, the broken files' included
        dataset = _only(dataset, images)
    dataset = _with_captions(dataset, caption_column, metadata)
    if resolution is not None:
        dataset = dataset.map(
            lambda batch: {"image": [_square(image, resolution) for image in batch["image"]]},
            batched=True,
            features=dataset.features,
            desc=f"resizing to {resolution}x{resolution}",
        )
    return dataset


def _scan(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(image files that open, metadata files, skipped files relative to the folder)."""
    images, metadata, skipped = [], [], []
    extensions = _image_extensions()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            file = Path(root) / name
            if name.startswith("."):
                continue
            if name in _METADATA_FILES:
                metadata.append(str(file))
            elif file.suffix.lower() in extensions and _opens(file):
                images.append(str(file))
            else:
                skipped.append(str(file.relative_to(folder)))
    return images, metadata, skipped


def _image_extensions() -> set[str]:
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    return {extension.lower() for extension in ImageFolder.EXTENSIONS}


def _opens(file: Path) -> bool:
    try:
        with Image.open(file) as image:
            image.verify()
        return True
    except Exception:  # any decoder error means "not an image we can train on"
        return False


def _only(dataset, images: list[str]):
    import datasets

    keep = {os.path.realpath(image) for image in images}
    paths = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    return dataset.select([i for i, entry in enumerate(paths) if os.path.realpath(entry["path"]) in keep])


def _with_captions(dataset, caption_column: str | None, metadata: list[str]):
    if caption_column is None:
        found = [column for column in _CAPTION_COLUMNS if column in dataset.column_names]
        if found and found[0] != "caption":
            dataset = dataset.rename_column(found[0], "caption")
        return dataset
    if caption_column not in dataset.column_names:
        where = f"the metadata ({', '.join(metadata)})" if metadata else "the folder (it has no metadata.jsonl)"
        raise ValueError(
            f"caption_column {caption_column!r} is not a column of {where}; columns: {dataset.column_names}"
        )
    if caption_column != "caption":
        if "caption" in dataset.column_names:
            dataset = dataset.remove_columns("caption")
        dataset = dataset.rename_column(caption_column, "caption")
    return dataset


def _square(image: Image.Image, resolution: int) -> Image.Image:
    image = image.convert("RGB")
    scale = resolution / min(image.size)
    width, height = max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.LANCZOS)
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))
