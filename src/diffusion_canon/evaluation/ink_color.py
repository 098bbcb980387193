"""Reading back a glyph image's ink colour, the measuring instrument for colour words in prompts.

The paper is the median colour along the image's border; the ink is what lies farthest from it. Only the glyph's
core is averaged (pixels at least :data:`CORE_FRACTION` as far from the paper as the farthest one). Antialiasing mixes
ink with paper, and a thin stroke (the ``outline`` style at 32 px) never shows pure ink, so the answer is the colour of
the glyph world's palette (:data:`~diffusion_canon.data.glyphs.COLORS`) in whose direction from the paper the core
lies (largest cosine), among those at least as far from the paper as the core. Nearest-in-RGB reads 3 in 4 outline
glyphs wrong; this rule reads every rendering of every split right (``tests/test_ink_color.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.glyphs import COLORS
from .images import ImageBatch, images_to_tensor

__all__ = ["CORE_FRACTION", "color_accuracy", "read_ink_colors"]

CORE_FRACTION = 0.8
_REACH = 0.9  # a palette ink must reach 90% of the core's distance from the paper (noise can push the core a bit past)
_PALETTE = np.array(list(COLORS.values()), dtype=np.float32) / 255.0


def read_ink_colors(images: ImageBatch) -> list[str]:
    """The palette name of each image's ink colour. ``images``: any batch :func:`.images.images_to_tensor` takes
    (PIL list, NHWC array, NCHW tensor), read at its own resolution."""
    if not isinstance(images, (np.ndarray, torch.Tensor)):
        images = list(images)  # a datasets column or a generator is read twice
    batch = images_to_tensor(images, _resolution(images)).permute(0, 2, 3, 1).numpy()
    names = list(COLORS)
    colors = []
    for image in batch:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        paper = np.median(border, axis=0)
        pixels = image.reshape(-1, 3)
        distance = np.linalg.norm(pixels - paper, axis=1)
        core = pixels[distance >= CORE_FRACTION * distance.max()].mean(axis=0) - paper
        # every pixel is paper + alpha (ink - paper), so the core points from the paper towards the ink even where a
        # thin stroke never reaches full ink (alpha < 1); the ink must reach at least as far as the core does
        towards = _PALETTE - paper
        reach = np.linalg.norm(towards, axis=1)
        cosine = towards @ core / np.maximum(reach * np.linalg.norm(core), 1e-12)
        cosine[reach < _REACH * np.linalg.norm(core)] = -np.inf
        colors.append(names[int(cosine.argmax())])
    return colors


def color_accuracy(images: ImageBatch, colors: Sequence[str]) -> float:
    """Share of ``images`` whose ink reads back as the matching entry of ``colors`` (palette names)."""
    unknown = sorted(set(colors) - set(COLORS))
    if unknown:
        raise ValueError(f"colors must be palette names {list(COLORS)}, got {unknown}")
    read = read_ink_colors(images)
    if len(read) != len(colors):
        raise ValueError(f"got {len(read)} images but {len(colors)} colours")
    return float(np.mean([r == c for r, c in zip(read, colors)]))


def _resolution(images: ImageBatch) -> int:
    if isinstance(images, np.ndarray):
        return int(images.shape[1])  # (N, H, W, C)
    if isinstance(images, torch.Tensor):
        return int(images.shape[-1])  # (N, C, H, W)
    return max(image.size[0] for image in images)
