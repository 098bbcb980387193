"""The shipped default pipelines/adm-glyphs-32: loads with ADMPipeline and with plain diffusers (trust_remote_code),
samples with classifier guidance, is small and stored in fp16; (slow) its guided samples are legible digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from diffusion_canon.pipelines import ADMPipeline

FOLDER = Path(__file__).resolve().parents[1] / "pipelines" / "adm-glyphs-32"
DIGITS = list("0123456789")


def test_folder_is_small_fp16_and_documented():
    size = sum(f.stat().st_size for f in FOLDER.rglob("*") if f.is_file())
    assert size < 10 * 2**20, f"{size} bytes"
    for component in ("unet", "classifier"):
        with safe_open(str(FOLDER / component / "diffusion_pytorch_model.safetensors"), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        assert json.loads((FOLDER / component / "config.json").read_text())["class_names"] == DIGITS
    recipe = (FOLDER / "RECIPE.md").read_text()
    assert "training/train_adm.py" in recipe and "training/train_classifier.py" in recipe
    assert "adm-glyphs-32" in (FOLDER / "README.md").read_text()


@pytest.mark.parametrize("load", [ADMPipeline.from_pretrained,
                                  lambda path: DiffusionPipeline.from_pretrained(path, trust_remote_code=True)])
def test_loads_both_ways_and_samples_with_guidance(load):
    pipe = load(FOLDER)
    assert type(pipe).__name__ == "ADMPipeline" and pipe.unet.dtype == pipe.classifier.dtype == torch.float32
    assert pipe.scheduler.config.variance_type == "learned_range" and pipe.class_names == DIGITS
    pipe.set_progress_bar_config(disable=True)
    plain, guided = (pipe(["3", "7"], num_inference_steps=4, classifier_scale=scale, output_type="np",
                          generator=torch.Generator().manual_seed(0)).images for scale in (0.0, 4.0))
    assert plain.shape == guided.shape == (2, 32, 32, 3) and np.isfinite(guided).all()
    assert not np.allclose(plain, guided)


@pytest.mark.slow
def test_guided_samples_are_read_as_their_digits():
    """Chance is 10%; benchmarks/RESULTS.md (Q2) has the measured accuracies, this checks a loose floor on the
    grey-stretched samples (the model card explains why)."""
    from diffusion_canon.evaluation import class_accuracy
    from diffusion_canon.demo.adm import load_default_pipeline
    from diffusion_canon.evaluation.glyph_samples import ink_on_paper, sample_per_class

    pipe = load_default_pipeline(FOLDER)
    for scale in (0.0, 2.0):
        images, labels = sample_per_class(pipe, 5, scale, 25, seed=0)
        assert class_accuracy(ink_on_paper(images), [DIGITS[k] for k in labels]) > 0.3
