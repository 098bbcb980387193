"""Fine-tuning on the glyph world's held-out subjects, end to end: the held-out font ``cm-typewriter``, which the tiny
base never saw, and the style ``outline``, which it saw only under the word "hollow" (never "outlined"); the three
training scripts run in-process on ``pipelines/tiny-sd-glyphs``,
and the two measures of DreamBooth's claim (Ruiz et al. 2022, §4): subject fidelity and prior preservation. Shared by
the demo gallery (:mod:`diffusion_canon.demo.fine_tuning`) and ``benchmarks/bench_dreambooth_prior.py``; the runs
need a checkout (its ``training/`` scripts).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BASE_NAME = "tiny-sd-glyphs"  # the base's folder in the shipped pipelines/
SUBJECT_FONT = "cm-typewriter"
INSTANCE_PROMPT = "a sks font letter A"
CLASS_PROMPT = "a letter A"
STYLE = "outline"
STYLE_WORD = "outlined"  # the glyph world's word for STYLE that the base never read: the one the LoRA teaches
PLACEHOLDER = "<glyph-style>"
RESOLUTION = 32
GUIDANCE_SCALE = 3.0
NUM_INFERENCE_STEPS = 25

# Step counts and learning rates sized for the tiny base on a CPU (the paper's full-size settings are in the scripts'
# docstrings); the demo and the benchmark use the same ones.
DREAMBOOTH_ARGS = ["--learning_rate", "3e-4", "--train_batch_size", "4", "--max_train_steps", "400",
                   "--num_class_images", "50", "--sample_batch_size", "25"]
TEXTUAL_INVERSION_ARGS = ["--learning_rate", "5e-2", "--train_batch_size", "8", "--max_train_steps", "400",
                          "--initializer_token", "bold", "--learnable_property", "style"]
LORA_ARGS = ["--learning_rate", "1e-3", "--train_batch_size", "8", "--max_train_steps", "200", "--rank", "4",
             "--train_text_encoder"]


def write_glyph_folder(folder: Path, num_images: int, seed: int = 0, captions: bool = False,
                       style_word: str | None = None, **selection) -> Path:
    """Render ``glyph_specs(num_images, seed, split="held_out", ...)`` as PNGs (the images of ``load_glyphs``), and
    with ``captions`` a ``metadata.jsonl`` holding each one's caption and subject ("letter Q", "digit 7": for
    train_textual_inversion.py's ``--subject_column subject``). ``style_word`` names the style by that one of its
    words in every caption that names it (:func:`~diffusion_canon.data.glyphs.recaption`)."""
    from ..data.glyphs import glyph_specs, recaption, render_glyph

    folder.mkdir(parents=True, exist_ok=True)
    specs = glyph_specs(num_images=num_images, seed=seed, split="held_out", **selection)
    if style_word:
        specs = [recaption(spec, [seed, index], name_style=style_word) for index, spec in enumerate(specs)]
    lines = []
    for index, spec in enumerate(specs):
        name = f"{index:03d}.png"
        Image.fromarray(render_glyph(spec, RESOLUTION)[RESOLUTION]).save(folder / name)
        subject = style_prompt("{kind} {char}", spec.character)
        lines.append(json.dumps({"file_name": name, "text": spec.caption, "subject": subject}))
    if captions:
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


SUBJECT = dict(characters="A", fonts=SUBJECT_FONT, styles="regular", colors="black", backgrounds="white")


def subject_images(folder: Path, num_images: int = 5, seed: int = 0) -> Path:
    """The DreamBooth subject: a few letters A in the held-out font, black on white, as in the paper's 3-5 photos."""
    return write_glyph_folder(folder, num_images, seed, **SUBJECT)


def subject_renders(num_images: int, seed: int = 1) -> list[Image.Image]:
    """Fresh renders of the subject (other jitter than the training images): the reference of subject fidelity."""
    from ..data.glyphs import load_glyphs

    return list(load_glyphs(RESOLUTION, seed=seed, split="held_out", num_images=num_images, **SUBJECT)["image"])


def style_images(folder: Path, num_images: int = 40, seed: int = 0) -> Path:
    """The held-out style in the training fonts, every character, black on white, with captions that call it
    ``STYLE_WORD`` (for the LoRA) and subjects (for textual inversion)."""
    from ..data.glyphs import TRAINING_FONTS

    return write_glyph_folder(folder, num_images, seed, captions=True, style_word=STYLE_WORD, styles=STYLE,
                              fonts=TRAINING_FONTS, colors="black", backgrounds="white")


def run_script(name: str, argv: Sequence[str]) -> None:
    """``training/<name>.py``'s ``main(argv)`` in this process, leaving accelerate's global state as it found it."""
    from ..checkout import training_script
    from ..training.run import reset_accelerate_state

    try:
        training_script(name).main(list(argv))
    finally:
        reset_accelerate_state()


def dreambooth(work: Path, prior_preservation: bool, base: str | Path, seed: int = 0,
               extra: Sequence[str] = ()) -> Path:
    """DreamBooth of the held-out font on ``base`` (full UNet), with or without the prior preservation loss."""
    output = work / ("dreambooth-prior" if prior_preservation else "dreambooth-plain")
    argv = ["--pretrained_model_name_or_path", str(base), "--output_dir", str(output),
            "--instance_data_dir", str(subject_images(work / "subject")), "--instance_prompt", INSTANCE_PROMPT,
            "--resolution", str(RESOLUTION), "--seed", str(seed), "--checkpointing_steps", "0", *DREAMBOOTH_ARGS]
    if prior_preservation:
        argv += ["--with_prior_preservation", "--class_data_dir", str(work / "class-A"), "--class_prompt", CLASS_PROMPT]
    run_script("train_dreambooth", [*argv, *extra])
    return output


def textual_inversion(work: Path, base: str | Path, seed: int = 0, extra: Sequence[str] = ()) -> Path:
    """Textual inversion of the held-out style on ``base``: the embedding of ``PLACEHOLDER``, from prompts that
    name each image's character."""
    output = work / "textual-inversion"
    run_script("train_textual_inversion", [
        "--pretrained_model_name_or_path", str(base), "--output_dir", str(output),
        "--train_data_dir", str(style_images(work / "style")), "--placeholder_token", PLACEHOLDER,
        "--subject_column", "subject", "--resolution", str(RESOLUTION), "--seed", str(seed), "--checkpointing_steps",
        "0", *TEXTUAL_INVERSION_ARGS, *extra,
    ])
    return output


def lora(work: Path, base: str | Path, seed: int = 0, extra: Sequence[str] = ()) -> Path:
    """A LoRA (UNet and text encoder) of the held-out style on ``base``, from glyphs captioned in the glyph world's
    words, the style always called ``STYLE_WORD``."""
    output = work / "lora"
    run_script("train_lora", [
        "--pretrained_model_name_or_path", str(base), "--output_dir", str(output),
        "--train_data_dir", str(style_images(work / "style")),
        "--resolution", str(RESOLUTION), "--seed", str(seed), "--checkpointing_steps", "0", *LORA_ARGS, *extra,
    ])
    return output


def load_pipeline(folder: str | Path):
    """A ``StableDiffusionPipeline`` (stock diffusers), float32 on the CPU, progress bars off."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), dtype=torch.float32, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def sample(pipe, prompt: str, num_images: int, seed: int = 0, batch_size: int = 50) -> list[Image.Image]:
    """``num_images`` samples of one prompt; image k depends only on (seed, k // batch_size)."""
    images = []
    for start in range(0, num_images, batch_size):
        count = min(batch_size, num_images - start)
        images += pipe([prompt] * count, height=RESOLUTION, width=RESOLUTION, guidance_scale=GUIDANCE_SCALE,
                       num_inference_steps=NUM_INFERENCE_STEPS,
                       generator=torch.Generator().manual_seed(seed * 1000 + start)).images
    return images


def subject_fidelity(images: Sequence[Image.Image]) -> dict[str, float]:
    """Fraction of samples the glyph classifier reads as the subject's font, and as the letter A."""
    from ..evaluation import predict_glyphs

    predicted = predict_glyphs(list(images))
    n = len(images)
    return {"font": sum(f == SUBJECT_FONT for f in predicted["font"]) / n,
            "character": sum(c == "A" for c in predicted["character"]) / n}


def style_prompt(template: str, character: str) -> str:
    """``template`` ("a {} {kind} {char}"-like, see :data:`STYLE_PROMPTS`) filled in for ``character``."""
    return template.format(kind="digit" if character.isdigit() else "letter", char=character)


# The prompts that ask for the held-out style: the textual-inversion placeholder; the glyph world's word "outlined",
# which the base never read (the LoRA teaches it); and "hollow", the one word the base saw outlines captioned with
# (make-base --held_out_style_word), what it draws unaided.
STYLE_PROMPTS = {"textual inversion": f"a {PLACEHOLDER} {{kind}} {{char}}",
                 "words": f"an {STYLE_WORD} {{kind}} {{char}}", "base word": "a hollow {kind} {char}"}


def style_fidelity(images, characters: Sequence[str]) -> dict[str, float]:
    """Fraction of ``images`` (PIL images or an (N, H, W, 3) array in [0, 1]) the glyph classifier reads as their
    asked character, and (its style head) as ``outline``."""
    from ..evaluation import class_accuracy

    images = images if isinstance(images, np.ndarray) else list(images)
    return {"character": class_accuracy(images, list(characters)),
            "style": class_accuracy(images, [STYLE] * len(images), head="style")}

