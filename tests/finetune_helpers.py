"""Test helpers of the fine-tuning scripts: a tiny random SD base, random image folders, the common flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffusion_canon.finetune.sd_base import save_tiny_sd_base


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> str:
    """A random tiny SD-format base folder (32-pixel images), one per test module."""
    return save_tiny_sd_base(str(tmp_path_factory.mktemp("base")))


def write_images(folder: Path, count: int, seed: int = 0, size: int = 32) -> Path:
    """``count`` random RGB PNGs ``0.png``, ``1.png``, ... in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def common_args(base: str, output_dir, *extra: str) -> list[str]:
    """Flags for a 2-step run at 32 pixels on ``base``, no checkpoints."""
    return ["--pretrained_model_name_or_path", base, "--output_dir", str(output_dir), "--resolution", "32",
            "--train_batch_size", "2", "--max_train_steps", "2", "--learning_rate", "1e-3", "--seed", "0",
            "--num_inference_steps", "2", "--checkpointing_steps", "0", *extra]
