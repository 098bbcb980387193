"""Turning the image formats pipelines produce into one batch tensor the metrics can read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ImageBatch = Any  # list of PIL images | np.ndarray (N, H, W, C) | torch.Tensor (N, C, H, W)

_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by rounding, not by a [-1, 1] convention


def images_to_tensor(images: ImageBatch, resolution: int) -> torch.Tensor:
    """Convert a batch of images to float32 ``(N, 3, resolution, resolution)`` in [0, 1].

    Accepts what diffusers pipelines return for ``output_type`` "pil", "np" and "pt": a list (or any iterable,
    e.g. a ``datasets`` column) of PIL images; a numpy array ``(N, H, W, C)``, float in [0, 1] or uint8; a torch
    tensor ``(N, C, H, W)``, float in [0, 1] or uint8. ``C`` is 3 or 1 (grey is repeated). Other sizes are resized
    with antialiasing.
    """
    if isinstance(images, torch.Tensor):
        batch = _checked_range(images.detach().cpu(), "torch tensor (N, C, H, W)")
    elif isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images as a numpy array must be (N, H, W, C), got shape {images.shape}")
        batch = _checked_range(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2), "numpy array")
    elif isinstance(images, Image.Image):
        raise TypeError("images must be a batch: pass a list of PIL images, not a single PIL image")
    elif isinstance(images, Iterable):
        pil = list(images)
        if not pil or not all(isinstance(image, Image.Image) for image in pil):
            kinds = sorted({type(image).__name__ for image in pil})
            raise TypeError(f"images as a sequence must hold PIL images, got {kinds or 'an empty sequence'}")
        size = (resolution, resolution)
        arrays = [np.asarray(_resized(image.convert("RGB"), size), dtype=np.float32) / 255 for image in pil]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    else:
        raise TypeError(
            f"images must be a list of PIL images, a numpy array (N, H, W, C) or a torch tensor (N, C, H, W); "
            f"got {type(images).__name__}"
        )
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels in (N, C, H, W) order here, got shape {tuple(batch.shape)}")
    if batch.shape[0] == 0:
        raise ValueError("images is an empty batch")
    batch = batch.expand(-1, 3, -1, -1) if batch.shape[1] == 1 else batch
    if batch.shape[-2:] != (resolution, resolution):
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", antialias=True)
    return batch.clamp(0, 1).contiguous()


def _checked_range(batch: torch.Tensor, what: str) -> torch.Tensor:
    if batch.dtype == torch.uint8:
        return batch.float() / 255
    if not batch.is_floating_point():
        raise TypeError(f"images as a {what} must be float in [0, 1] or uint8, got dtype {batch.dtype}")
    batch = batch.float()
    low, high = float(batch.min()), float(batch.max())
    if low < -_TOLERANCE or high > 1 + _TOLERANCE:
        raise ValueError(
            f"images as a float {what} must lie in [0, 1], got values in [{low:.3f}, {high:.3f}] "
            "(map [-1, 1] model outputs with (x + 1) / 2)"
        )
    return batch


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
