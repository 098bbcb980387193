"""The tiny SD base (``pipelines/tiny-sd-glyphs``) in the demo gallery: the unCLIP section's prompts through stock
diffusers' ``StableDiffusionPipeline``, at the settings benchmark T1 measured."""

from __future__ import annotations

from pathlib import Path

import torch

from ..image_grid import image_grid
from .section import DemoSection
from .unclip import PROMPTS

PIPELINE_NAME = "tiny-sd-glyphs"  # its folder in the shipped pipelines/
NUM_INFERENCE_STEPS = 25  # benchmark T1's setting; guidance is the pipeline's own (7.5)


def tiny_sd_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo section: two samples per prompt from the tiny SD base."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(pipelines / PIPELINE_NAME))  # a plain load: float32
    pipe.set_progress_bar_config(disable=True)
    side = pipe.unet.config.sample_size * pipe.vae_scale_factor
    images = pipe(list(PROMPTS), num_images_per_prompt=2, num_inference_steps=NUM_INFERENCE_STEPS, height=side,
                  width=side, generator=torch.Generator().manual_seed(0)).images
    # prompt-major: two samples per prompt; show each prompt's pair as a column
    image_grid(images[0::2] + images[1::2], len(PROMPTS), scale=4, gap=2).save(output / "tiny_sd_prompts.png")
    return DemoSection(
        title="The tiny SD base: stock StableDiffusionPipeline on glyphs",
        description=(
            f"{PIPELINE_NAME} = AutoencoderKL (trained with an ink-weighted L1) + UNet2DConditionModel on the frozen "
            "text tower of the unCLIP section's glyph CLIP, trained by `diffusion-canon make-base` without the "
            "held-out font (its outlines it saw captioned only as \"hollow\"). "
            f"{NUM_INFERENCE_STEPS} DDIM steps, classifier-free guidance 7.5. Measured on "
            "216 held-out captions per seed (benchmark T1): the asked character 0.968 / 0.972 / 0.963, the asked ink "
            "colour 0.988 / 0.983 / 0.979. It is the base that `make demo-train` fine-tunes."
        ),
        images=[("tiny_sd_prompts.png", "two samples per prompt (columns): " + "; ".join(PROMPTS))],
    )
