"""The glyph cascade (``pipelines/glyph-cascade-8-16``) in the demo gallery: true low-res inputs and the SR stage's
outputs next to the real high-res glyphs, then full cascade samples (base 8×8 → SR 16×16)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from .hub import load_pipeline_folder
from .pipeline_cascade import CascadedPipeline

DEFAULT_PIPELINE = Path(__file__).resolve().parents[3] / "pipelines" / "glyph-cascade-8-16"


def load_default_cascade(path: str | Path = DEFAULT_PIPELINE) -> CascadedPipeline:
    """The default glyph cascade, float32 on the CPU."""
    return load_pipeline_folder(CascadedPipeline, path)


def cascade_section(output: Path):
    from ..data.glyphs import CHARACTERS, load_glyphs
    from ..demo import DemoSection, image_grid

    pipe = load_default_cascade()
    low, high = pipe.sr_unet_1.config.low_res_sample_size, pipe.sr_unet_1.config.sample_size
    pairs = load_glyphs(seed=3, split="test", num_images=12, resolutions=(low, high))
    upsampled = pipe.stages[0](pairs[f"image_{low}"], class_labels=list(pairs["label"]), num_inference_steps=25,
                               generator=torch.Generator().manual_seed(0)).images
    enlarge = lambda images: [image.resize((high, high), Image.Resampling.NEAREST) for image in images]  # noqa: E731
    image_grid(enlarge(pairs[f"image_{low}"]) + upsampled + list(pairs[f"image_{high}"]), 12, scale=4).save(
        output / "cascade_super_resolution.png")
    labels = list(range(12))
    out = pipe(class_labels=labels, num_inference_steps=25, generator=torch.Generator().manual_seed(0))
    image_grid(enlarge(out.stage_images[0]) + out.images, 12, scale=4).save(output / "cascade_samples.png")
    return DemoSection(
        title="Cascaded diffusion (Ho et al. 2021): 8×8 base → 16×16 super-resolution",
        description=(
            "CascadedPipeline = a class-conditional ADM base at 8×8 and a SuperResolutionUNet2DModel stage "
            "conditioned on the upsampled 8×8 image and its augmentation level, trained with Gaussian-noise "
            "conditioning augmentation. Tiny CPU-trained models (see RECIPE.md); 25 ancestral steps per stage, "
            "no augmentation at inference."
        ),
        images=[
            ("cascade_super_resolution.png", "SR stage on real glyphs: 8×8 input (top, enlarged), SR output (middle), "
                                             "real 16×16 (bottom)"),
            ("cascade_samples.png", f"full cascade samples for classes {''.join(CHARACTERS[k] for k in labels)}: "
                                    "base 8×8 (top, enlarged) → SR 16×16 (bottom)"),
        ],
    )
