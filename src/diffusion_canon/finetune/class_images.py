"""DreamBooth's class images (Ruiz et al. 2022, §3.3): samples of the class prompt from the base model itself, the
data of the prior-preservation loss, written once to ``--class_data_dir`` and shared by every process."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable

import torch
from accelerate import Accelerator

from .data import list_images

logger = logging.getLogger(__name__)


def generate_class_images(
    accelerator: Accelerator, make_pipeline: Callable[[], object], class_data_dir: str, class_prompt: str,
    num_class_images: int, sample_batch_size: int, args: argparse.Namespace,
) -> None:
    """Fill ``class_data_dir`` up to exactly ``num_class_images`` images sampled from the base with ``class_prompt``.

    Missing image k goes to process k mod P (file ``class-<k>.png``, its own seed), so P processes write exactly the
    missing count with no duplicates (the diffusers example pads the last batch per process: 6 images for 5 on 2
    processes). Every process waits at a barrier until the folder is complete.
    """
    if accelerator.is_main_process:
        os.makedirs(class_data_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    existing = len(list_images(class_data_dir, "class_data_dir", allow_empty=True))
    accelerator.wait_for_everyone()  # every process has counted before any writes
    missing = list(range(existing, num_class_images))[accelerator.process_index :: accelerator.num_processes]
    if missing:
        logger.info("sampling %d class images for %r", len(missing), class_prompt)
        pipeline = make_pipeline()
        pipeline.set_progress_bar_config(disable=True)
        for start in range(0, len(missing), sample_batch_size):
            chunk = missing[start : start + sample_batch_size]
            generators = [torch.Generator("cpu").manual_seed((args.seed or 0) * 100_003 + k) for k in chunk]
            images = pipeline(
                [class_prompt] * len(chunk), num_inference_steps=args.num_inference_steps,
                guidance_scale=args.guidance_scale, height=args.resolution, width=args.resolution,
                generator=generators,
            ).images
            for k, image in zip(chunk, images):
                image.save(os.path.join(class_data_dir, f"class-{k:05d}.png"))
        del pipeline
    accelerator.wait_for_everyone()
