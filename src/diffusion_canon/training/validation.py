"""Validation images: a grid saved under ``output_dir/validation`` and sent to the active trackers."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from accelerate import Accelerator
from PIL import Image

from ..image_grid import image_grid


def save_validation_images(
    images: Sequence[Image.Image], output_dir: str, step: int, accelerator: Accelerator | None = None
) -> str | None:
    """Save ``images`` as ``output_dir/validation/step-<step>.png`` and log them to tensorboard / wandb trackers."""
    if not images:
        return None
    folder = os.path.join(output_dir, "validation")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step-{step:06d}.png")
    image_grid(images).save(path)
    for tracker in accelerator.trackers if accelerator is not None else []:
        if tracker.name == "tensorboard":
            stacked = np.stack([np.asarray(image.convert("RGB")) for image in images])
            tracker.writer.add_images("validation", stacked, step, dataformats="NHWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"validation": [wandb.Image(image) for image in images]}, step=step)
    return path


def class_validation_samples(pipe, count: int, seed: int | None, **call_kwargs) -> list:
    """``count`` PIL samples of a pipeline over a ``unet`` (classes 0, 1, … in turn; no labels when it is
    unconditional), drawn with the generator seeded ``seed`` (0 when None), the U-Net in eval mode for the call."""
    import torch

    unet, num_classes = pipe.unet, pipe.unet.config.num_classes
    was_training = unet.training
    pipe.set_progress_bar_config(disable=True)
    labels = None if num_classes is None else [i % num_classes for i in range(count)]
    with torch.no_grad():
        images = pipe(labels, batch_size=count, generator=torch.Generator().manual_seed(seed or 0),
                      **call_kwargs).images
    unet.train(was_training)
    return images
