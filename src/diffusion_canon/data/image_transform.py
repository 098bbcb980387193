"""The image preprocessing every training script shares: resize, square crop, optional flip, to CHW in [-1, 1]."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image


class ImageTransform:
    """Resize the short side to ``resolution``, crop a square (center or random), optionally flip; to CHW in [-1, 1].

    Random choices use the ``random`` module, whose state is part of each checkpoint (exact resume)."""

    def __init__(self, resolution: int, center_crop: bool = False, random_flip: bool = False) -> None:
        self.resolution, self.center_crop, self.random_flip = resolution, center_crop, random_flip

    @property
    def deterministic(self) -> bool:
        """Whether an image always becomes the same tensor, so its VAE posterior can be computed once
        (`CachedLatents`) with nothing changed but the speed."""
        return self.center_crop and not self.random_flip

    def __call__(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        scale = self.resolution / min(image.size)
        w, h = max(self.resolution, round(image.width * scale)), max(self.resolution, round(image.height * scale))
        image = image.resize((w, h), Image.BILINEAR)
        if self.center_crop:
            left, top = (w - self.resolution) // 2, (h - self.resolution) // 2
        else:
            left, top = random.randint(0, w - self.resolution), random.randint(0, h - self.resolution)
        image = image.crop((left, top, left + self.resolution, top + self.resolution))
        if self.random_flip and random.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array).permute(2, 0, 1)
