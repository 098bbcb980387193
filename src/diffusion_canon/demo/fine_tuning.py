"""Fine-tuning in the demo gallery: DreamBooth of the held-out font (with and without prior preservation), textual
inversion and a LoRA of the held-out style, trained here on ``pipelines/tiny-sd-glyphs`` (324 s on a 2-core
CPU, 2026-12-07) and shown as before/after grids from the same seeds."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

from ..finetune.held_out_subjects import (
    BASE_NAME,
    CLASS_PROMPT,
    GUIDANCE_SCALE,
    INSTANCE_PROMPT,
    NUM_INFERENCE_STEPS,
    PLACEHOLDER,
    dreambooth,
    load_pipeline,
    lora,
    sample,
    style_images,
    subject_images,
    textual_inversion,
)
from ..image_grid import image_grid
from .section import DemoSection


def fine_tuning_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo gallery: DreamBooth of the held-out font with and without prior preservation, textual inversion and a
    LoRA of the held-out style, each as before/after grids from the same seeds."""
    base_folder = pipelines / BASE_NAME
    base = load_pipeline(base_folder)

    def per_character(pipe, template: str, characters: str = "ABGKQR47") -> list[Image.Image]:
        return [sample(pipe, template.format(c), 1, seed=i)[0] for i, c in enumerate(characters)]

    rows: dict[str, list[Image.Image]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subject = [Image.open(path) for path in sorted(subject_images(work / "subject").glob("*.png"))]
        rows["db_base"] = sample(base, INSTANCE_PROMPT, 8) + sample(base, CLASS_PROMPT, 8)
        for prior in (False, True):
            pipe = load_pipeline(dreambooth(work, prior, base_folder))
            rows[f"db_{prior}"] = sample(pipe, INSTANCE_PROMPT, 8) + sample(pipe, CLASS_PROMPT, 8)
        style = [Image.open(path) for path in sorted(style_images(work / "style").glob("*.png"))[:8]]
        ti_folder, lora_folder = textual_inversion(work, base_folder), lora(work, base_folder)
        rows["ti_before"] = per_character(base, "a bold letter {}")
        rows["lora_before"] = per_character(base, "an outlined letter {}")
        base.load_textual_inversion(str(ti_folder))
        rows["ti_after"] = per_character(base, f"a {PLACEHOLDER} letter {{}}")
        pipe = load_pipeline(base_folder)  # a fresh base: the textual inversion is loaded into `base`
        pipe.load_lora_weights(str(lora_folder))
        rows["lora_after"] = per_character(pipe, "an outlined letter {}")

    image_grid(subject, len(subject), scale=3, gap=2).save(output / "dreambooth_subject.png")
    image_grid(rows["db_base"] + rows["db_False"] + rows["db_True"], 16, scale=3, gap=2).save(output / "dreambooth.png")
    image_grid(style + rows["ti_before"] + rows["ti_after"], 8, scale=3, gap=2).save(output / "textual_inversion.png")
    image_grid(style + rows["lora_before"] + rows["lora_after"], 8, scale=3, gap=2).save(output / "lora.png")
    return DemoSection(
        title="Fine-tuning the tiny SD base: DreamBooth, textual inversion, LoRA",
        description=(
            "pipelines/tiny-sd-glyphs (AutoencoderKL + UNet2DConditionModel on the frozen text tower of "
            "unclip-glyphs' CLIP, trained by `diffusion-canon make-base` without the held-out font cm-typewriter, "
            "and with the held-out style outline captioned only as \"hollow\", never \"outlined\") fine-tuned here by "
            "training/train_dreambooth.py (400 steps), train_textual_inversion.py (400 steps, prompts that name "
            "each image's character) and train_lora.py (200 steps, UNet and text encoder), in-process. "
            "Stock diffusers loads every result (from_pretrained, load_textual_inversion, load_lora_weights). "
            f"Samples: classifier-free guidance {GUIDANCE_SCALE}, {NUM_INFERENCE_STEPS} DDIM steps. "
            "benchmarks/RESULTS.md (F1) measures DreamBooth's claim on 100 samples per prompt and two seeds: both "
            "learn the subject (cFID to it 208 → 50–99); without the prior loss the class prompt drifts (cFID to the "
            "base's own samples 93–102, second row, right half), with it, it keeps the base's letters (18–37, last "
            "row; the floor is 7.3)."
        ),
        images=[
            ("dreambooth_subject.png", f"DreamBooth's {len(subject)} subject images: the held-out font"),
            ("dreambooth.png", "DreamBooth of the held-out font. Rows: the base; DreamBooth "
                               "without the prior loss; DreamBooth with prior preservation. Left half: "
                               f"“{INSTANCE_PROMPT}”, right half: “{CLASS_PROMPT}” (the prior the loss preserves)"),
            ("textual_inversion.png", f"Textual inversion of the held-out style: training images (top); base with the "
                                      f"initializer word, “a bold letter X”; after, “a {PLACEHOLDER} letter X”. It "
                                      "benchmark F2 reads 0.67–0.71 of its samples as outlined and 0.89–0.90 as "
                                      "the asked character (the base's own word, “a hollow letter X”: 0.83 / 0.84)"),
            ("lora.png", "LoRA (rank 4, UNet and text encoder) on outline glyphs captioned “outlined”: training "
                         "images (top); base, “an outlined letter X” (a word it never read); with the LoRA, the same "
                         "prompts and seeds. Benchmark F2 reads 0.53–0.56 of its samples as outlined (base: 0.00) "
                         "and 0.93–0.95 as the asked character"),
        ],
    )
