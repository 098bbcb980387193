"""Textual inversion and LoRA of the held-out style ``outline`` on ``pipelines/tiny-sd-glyphs`` (Gal et al. 2022;
Hu et al. 2021): do the samples come out outlined, and still as the asked character?

    python benchmarks/bench_style_finetune.py --work out/style-finetune --seeds 0 1

For each training seed, the two runs of ``diffusion_canon.finetune.held_out_subjects`` (the demo's budget unless
``--textual_inversion_args`` / ``--lora_args`` add flags), then ``--per_character`` samples of each of the 36
characters (classifier-free guidance 3, 25 DDIM steps): textual inversion with "a <glyph-style> letter X", the LoRA
and the base with the glyph world's word the base never read, "an outlined letter X", and the base with the one it
saw outlines captioned with, "a hollow letter X". Read back by the glyph classifier: the asked
character (its character head) and the style (``load_glyph_classifier(styles=True)``, the fraction read as
``outline``). Real renders of the style (black on white, every font, other jitter than the training images)
are the instrument's ceiling; the same renders encoded and decoded by the base's VAE are the latent space's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

import numpy as np

from diffusion_canon.data import CHARACTERS, load_glyphs
from diffusion_canon.evaluation import vae_round_trip
from diffusion_canon.finetune.held_out_subjects import (
    BASE_NAME, STYLE, STYLE_PROMPTS, load_pipeline, lora, sample, style_fidelity, style_prompt, textual_inversion,
)


def measure(pipe, template: str, per_character: int) -> dict[str, float]:
    images, asked = [], []
    for index, character in enumerate(CHARACTERS):
        images += sample(pipe, style_prompt(template, character), per_character, seed=index)
        asked += [character] * per_character
    return style_fidelity(images, asked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="out/style-finetune")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--per_character", type=int, default=4)
    parser.add_argument("--textual_inversion_args", default="", help="extra train_textual_inversion.py flags")
    parser.add_argument("--lora_args", default="", help='extra train_lora.py flags, e.g. "--max_train_steps 400"')
    parser.add_argument("--output", default=None, help="JSON results (default: WORK/results.json)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    base_folder = Path(__file__).resolve().parents[1] / "pipelines" / BASE_NAME
    real = load_glyphs(32, seed=1, split="held_out", styles=STYLE, colors="black", backgrounds="white",
                       num_images=36 * args.per_character)
    characters = [CHARACTERS[label] for label in real["label"]]
    base = load_pipeline(base_folder)
    round_trip = vae_round_trip(base.vae, np.stack([np.asarray(image) for image in real["image"]]) / 255)
    rows = [{"name": "real renders of the style", "seed": None, **style_fidelity(real["image"], characters)},
            {"name": "the same renders through the base's VAE", "seed": None,
             **style_fidelity(round_trip, characters)},
            {"name": "base model, \"an outlined letter X\"", "seed": None,
             **measure(base, STYLE_PROMPTS["words"], args.per_character)},
            {"name": "base model, \"a hollow letter X\"", "seed": None,
             **measure(base, STYLE_PROMPTS["base word"], args.per_character)}]
    for row in rows:
        print(json.dumps(row), flush=True)
    # (row name, trainer, extra flags, how stock diffusers loads the result, the prompt template it is sampled with)
    runs = [("textual inversion", textual_inversion, args.textual_inversion_args, "load_textual_inversion",
             STYLE_PROMPTS["textual inversion"]),
            ("LoRA", lora, args.lora_args, "load_lora_weights", STYLE_PROMPTS["words"])]
    for seed in args.seeds:
        for name, train, extra, load, template in runs:
            start = time.time()
            folder = train(work / f"seed-{seed}", base_folder, seed=seed, extra=shlex.split(extra))
            seconds = time.time() - start
            pipe = load_pipeline(base_folder)
            getattr(pipe, load)(str(folder))
            rows.append({"name": name, "seed": seed, "train_seconds": seconds,
                         **measure(pipe, template, args.per_character)})
            print(json.dumps(rows[-1]), flush=True)
    output = Path(args.output or work / "results.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"settings": vars(args), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
