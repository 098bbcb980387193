"""unCLIP on glyphs (``pipelines/unclip-glyphs``) in the demo gallery: prompts → images (prior + decoder), and image
variations (an input glyph's CLIP embedding → the decoder)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from ..image_grid import image_grid
from ..pipelines.hub import load_pipeline_folder
from ..pipelines.pipeline_unclip import UnCLIPPipeline
from .section import DemoSection

PIPELINE_NAME = "unclip-glyphs"  # its folder in the shipped pipelines/
PROMPTS = (
    "a red bold serif letter Q",
    "the digit 7 in blue monospace",
    "a green sans-serif letter A",
    "a black letter K on a white background",
    "the digit 3 in orange",
    "a purple italic letter R",
    "a white letter M on a black background",
    "a brown digit 5",
)


def load_default_unclip(path: str | Path) -> UnCLIPPipeline:
    """The default glyph unCLIP (CLIP + prior + decoder), float32 on the CPU."""
    return load_pipeline_folder(UnCLIPPipeline, path)


def unclip_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo section: prompts → images, and image variations."""
    from ..data.glyphs import load_glyphs

    pipe = load_default_unclip(pipelines / PIPELINE_NAME)
    side = pipe.decoder.config.sample_size
    images = pipe(list(PROMPTS), num_images_per_prompt=2, generator=torch.Generator().manual_seed(0)).images
    # prompt-major: two samples per prompt; show each prompt's pair as a column
    image_grid(images[0::2] + images[1::2], len(PROMPTS), scale=4, gap=2).save(output / "unclip_prompts.png")

    sources = load_glyphs(seed=5, split="test", num_images=6)["image"]
    variations = pipe.variations(list(sources), num_images_per_prompt=3,
                                 generator=torch.Generator().manual_seed(0)).images
    shown = [image.resize((side, side), Image.Resampling.LANCZOS) for image in sources]
    image_grid(shown + variations[0::3] + variations[1::3] + variations[2::3], len(sources), scale=4, gap=2).save(
        output / "unclip_variations.png")
    return DemoSection(
        title="unCLIP (Ramesh et al. 2022): text → CLIP image embedding → image",
        description=(
            "UnCLIPPipeline = a glyph CLIP trained with one-attribute hard negatives, the diffusion prior "
            "p(z_i | y) and the decoder p(x | z_i, y): an "
            f"ADM U-Net at {side}×{side} with the CLIP image embedding added to its timestep embedding and projected "
            "into 4 context tokens next to the caption's token encodings. 25 prior steps (guidance 4), 25 decoder "
            "steps (guidance 3). Measured on 216 held-out captions (benchmark T1): the asked ink colour 0.97, the "
            "asked character 0.88; variations keep the character 0.81 and the colour 0.97."
        ),
        images=[
            ("unclip_prompts.png", "two samples per prompt (columns): " + "; ".join(PROMPTS)),
            ("unclip_variations.png", "image variations: input glyph (top row, downsampled to the decoder's side), "
                                      "then three decodings of its CLIP image embedding"),
        ],
    )
