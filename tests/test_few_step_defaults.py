"""The shipped few-step students of pipelines/adm-glyphs-32 (consistency distillation; progressive distillation to 2
and 1 steps): load both ways in one dtype, sample at their documented step counts, refuse what they do not support,
are small fp16 folders with recipes, and (slow) draw the asked digit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from diffusion_canon.pipelines import EDMPipeline

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"
CONSISTENCY = PIPELINES / "adm-glyphs-32-consistency"
DISTILLED = {n: PIPELINES / f"adm-glyphs-32-distilled-{n}step" for n in (1, 2)}
FOLDERS = [CONSISTENCY, *DISTILLED.values()]
DIGITS = list("0123456789")


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_folders_are_small_fp16_and_documented(folder):
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size < 4 * 2**20, f"{size} bytes"
    with safe_open(str(folder / "unet" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert json.loads((folder / "unet" / "config.json").read_text())["class_names"] == DIGITS
    assert (folder / "recipe.sh").is_file() and "adm-glyphs-32" in (folder / "RECIPE.md").read_text()
    assert folder.name in (folder / "README.md").read_text()


@pytest.mark.parametrize("load", [EDMPipeline.from_pretrained,
                                  lambda path: DiffusionPipeline.from_pretrained(path, trust_remote_code=True)])
def test_students_load_both_ways_and_sample_their_steps(load):
    consistency = load(CONSISTENCY)
    assert type(consistency).__name__ == "EDMPipeline" and consistency.unet.dtype == torch.float32
    consistency.set_progress_bar_config(disable=True)
    searched = consistency.config.multistep_timesteps
    assert sorted(map(int, searched)) == list(range(2, 9))  # --ts for 2 … 8 steps, by search
    for steps in (1, 2, 4):
        images = consistency(["3", "7"], num_inference_steps=steps, output_type="np",
                             generator=torch.Generator().manual_seed(0)).images
        assert images.shape == (2, 32, 32, 3) and np.isfinite(images).all() and consistency.num_timesteps == steps
    for n, folder in DISTILLED.items():
        student = load(folder)
        assert student.config.distilled_steps == n and student.unet.dtype == torch.float32
        student.set_progress_bar_config(disable=True)
        images = student(["3", "7"], output_type="np", generator=torch.Generator().manual_seed(0)).images
        assert images.shape == (2, 32, 32, 3) and student.num_timesteps == n
        with pytest.raises(ValueError, match=f"distilled for {n} step"):
            student(["3"], num_inference_steps=n + 1)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "call"), [
    ("adm-glyphs-32-consistency", dict(num_inference_steps=1)),
    ("adm-glyphs-32-consistency", dict(num_inference_steps=2)),
    ("adm-glyphs-32-distilled-1step", {}),
    ("adm-glyphs-32-distilled-2step", {}),
])
def test_students_draw_the_asked_digit(name, call):
    """Q5 / Q6 (benchmarks/RESULTS.md) measure ≥ 0.9 on 500 samples; here 50 (5 per digit, fixed seeds) must reach
    0.8 — for a sampler at 0.9 the chance of reading 39 or fewer of 50 is 0.9 % (binomial)."""
    from diffusion_canon.evaluation import class_accuracy
    from diffusion_canon.evaluation.glyph_samples import ink_on_paper, sample_classes

    pipe = EDMPipeline.from_pretrained(PIPELINES / name)
    pipe.set_progress_bar_config(disable=True)
    images, labels = sample_classes(pipe, 5, seed=0, **call)
    assert class_accuracy(ink_on_paper(images), [DIGITS[k] for k in labels]) >= 0.8
