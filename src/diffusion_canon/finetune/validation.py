"""Validation images of the fine-tuning scripts: samples of ``--validation_prompt`` from the pipeline being trained,
with the same seed every round (the training core saves and logs them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from PIL import Image


def validation_images(make_pipeline: Callable[[], object], prompt: str, args: argparse.Namespace) -> list[Image.Image]:
    """``--num_validation_images`` samples of ``prompt``, seeded by ``--seed`` so every round is comparable."""
    num_images = args.num_validation_images
    pipeline = make_pipeline()
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator(device="cpu").manual_seed(args.seed or 0)
    return pipeline(
        [prompt] * num_images, num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale,
        height=args.resolution, width=args.resolution, generator=generator,
    ).images
