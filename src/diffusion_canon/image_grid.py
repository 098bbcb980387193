"""Tiling images into one sheet: the training scripts' validation grids, the model cards' samples, the demo gallery.

One function for every caller, so a grid reads the same everywhere: tiles row by row, each enlarged by a whole factor
with nearest-neighbour resampling (glyphs are a few pixels wide; smoothing would blur the strokes being judged).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image

__all__ = ["GAP_GREY", "image_grid"]

GAP_GREY = (128, 128, 128)  # the canvas: gaps and empty cells read as neither ink (black) nor paper (white)


def image_grid(images: Iterable[Image.Image | np.ndarray], columns: int | None = None, scale: int = 1,
               gap: int = 0, background: tuple[int, int, int] | str = GAP_GREY) -> Image.Image:
    """Tile images row by row into one RGB image.

    Args:
        images: PIL images, or numpy arrays ``(H, W, C)`` / ``(H, W)`` that are uint8 or float in [0, 1] (a batch
            ``(N, H, W, C)`` as a pipeline returns with ``output_type="np"`` iterates as such); any iterable, e.g. a
            ``datasets`` column. Every tile is resized to the first one's size.
        columns: tiles per row; default ``ceil(sqrt(n))``, a near-square sheet.
        scale: whole enlargement factor of every tile (nearest neighbour).
        gap: pixels of ``background`` between tiles and around the sheet.
        background: colour of the gaps and of the empty cells of the last row.

    Returns:
        ``(columns·(W·scale + gap) + gap) × (rows·(H·scale + gap) + gap)`` RGB image.
    """
    tiles = [_as_pil(image) for image in images]
    if not tiles:
        raise ValueError("image_grid needs at least one image, got none")
    columns = math.ceil(math.sqrt(len(tiles))) if columns is None else columns
    for name, value, least in (("columns", columns, 1), ("scale", scale, 1), ("gap", gap, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"image_grid: {name} must be an int >= {least}, got {value!r}")
    width, height = tiles[0].width * scale, tiles[0].height * scale
    rows = math.ceil(len(tiles) / columns)
    sheet = Image.new("RGB", (columns * (width + gap) + gap, rows * (height + gap) + gap), background)
    for i, tile in enumerate(tiles):
        if tile.size != (width, height):
            tile = tile.resize((width, height), Image.Resampling.NEAREST)
        sheet.paste(tile, (gap + (i % columns) * (width + gap), gap + (i // columns) * (height + gap)))
    return sheet


def _as_pil(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image_grid: images must be PIL images or numpy arrays, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"image_grid: a numpy image must be (H, W) or (H, W, C) with C in 1, 3, 4; "
                         f"got shape {image.shape}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"image_grid: a numpy image must be uint8 or float in [0, 1], got dtype {image.dtype}")
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image).convert("RGB")
