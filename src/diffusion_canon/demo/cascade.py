"""The glyph cascade (``pipelines/glyph-cascade-16-64``) in the demo gallery: true low-res inputs and the SR stage's
outputs next to the real high-res glyphs, then full cascade samples (base 16×16 → SR 64×64)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..image_grid import image_grid
from ..pipelines.hub import load_pipeline_folder
from ..pipelines.pipeline_cascade import CascadedPipeline
from .section import DemoSection

PIPELINE_NAME = "glyph-cascade-16-64"  # its folder in the shipped pipelines/


def load_default_cascade(path: str | Path) -> CascadedPipeline:
    """The default glyph cascade, float32 on the CPU."""
    return load_pipeline_folder(CascadedPipeline, path)


def cascade_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo section: the SR stage on real low-res glyphs, then full cascade samples."""
    from ..data.glyphs import load_glyphs

    pipe = load_default_cascade(pipelines / PIPELINE_NAME)
    low, high = pipe.sr_unet_1.config.low_res_sample_size, pipe.sr_unet_1.config.sample_size
    classes = pipe.base_unet.config.class_names
    pairs = load_glyphs(seed=3, split="test", num_images=10, resolutions=(low, high), characters=classes)
    upsampled = pipe.stages[0](pairs[f"image_{low}"], class_labels=list(pairs["label"]), num_inference_steps=25,
                               generator=torch.Generator().manual_seed(0)).images
    enlarge = lambda images: [image.resize((high, high), Image.Resampling.NEAREST) for image in images]  # noqa: E731
    image_grid(enlarge(pairs[f"image_{low}"]) + upsampled + list(pairs[f"image_{high}"]), 10, scale=2, gap=2).save(
        output / "cascade_super_resolution.png")
    labels = [k % len(classes) for k in range(20)]
    out = pipe(class_labels=labels, num_inference_steps=25, generator=torch.Generator().manual_seed(0))
    image_grid(enlarge(out.stage_images[0][:10]) + out.images[:10] + enlarge(out.stage_images[0][10:])
               + out.images[10:], 10, scale=2, gap=2).save(output / "cascade_samples.png")
    return DemoSection(
        title=f"Cascaded diffusion (Ho et al. 2021): {low}×{low} base → {high}×{high} super-resolution",
        description=(
            f"CascadedPipeline = a class-conditional ADM base at {low}×{low} and a SuperResolutionUNet2DModel stage "
            f"conditioned on the upsampled {low}×{low} image and its augmentation level, trained with Gaussian-noise "
            "conditioning augmentation. Tiny CPU-trained models (see RECIPE.md); 25 ancestral steps per stage, "
            "no augmentation at inference."
        ),
        images=[
            ("cascade_super_resolution.png", f"SR stage on real glyphs: {low}×{low} input (top, enlarged), SR output "
                                             f"(middle), real {high}×{high} (bottom)"),
            ("cascade_samples.png", f"full cascade samples, two per class {''.join(classes)}: base {low}×{low} "
                                    f"(enlarged) → SR {high}×{high} below it"),
        ],
    )
