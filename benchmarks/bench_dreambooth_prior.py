"""DreamBooth's claim in miniature (Ruiz et al. 2022, §4.3): the prior preservation loss keeps the class prior while the
subject is learned. On ``pipelines/tiny-sd-glyphs`` the subject is the held-out font ``cm-typewriter`` (5 letters A,
"a sks font letter A"), the class "a letter A".

    python benchmarks/bench_dreambooth_prior.py --work out/dreambooth-prior --seeds 0 1

For each training seed, two DreamBooth runs with the same budget (``diffusion_canon.finetune.held_out_subjects``), without and
with prior preservation, then ``--num_images`` samples per prompt (classifier-free guidance 3, 25 DDIM steps):

- subject fidelity: cFID of instance-prompt samples to fresh renders of the subject (the role DINO / CLIP-I similarity
  plays in the paper), and the fraction the glyph classifier reads as the subject's font (and as an A);
- prior preservation: class-prompt samples vs the base model's own class-prompt samples (another sampling seed), cFID
  on glyph-classifier features, and the fraction of class-prompt samples drawn in the subject's font (drift).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import time
from pathlib import Path

from diffusion_canon.evaluation import cfid
from diffusion_canon.finetune.held_out_subjects import (
    BASE_NAME,
    CLASS_PROMPT, INSTANCE_PROMPT, dreambooth, load_pipeline, sample, subject_fidelity, subject_renders,
)


def measure(pipe, subject, reference, num_images: int) -> dict[str, float]:
    instance, classes = sample(pipe, INSTANCE_PROMPT, num_images), sample(pipe, CLASS_PROMPT, num_images)
    fidelity = subject_fidelity(instance)
    return {"instance_font": fidelity["font"], "instance_A": fidelity["character"],
            "instance_cfid": cfid(instance, subject), "class_cfid": cfid(classes, reference),
            "class_in_subject_font": subject_fidelity(classes)["font"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="out/dreambooth-prior")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--num_images", type=int, default=100)
    parser.add_argument("--output", default=None, help="JSON results (default: WORK/results.json)")
    parser.add_argument("--dreambooth_args", default="", help='Extra train_dreambooth.py flags, e.g. "--max_train_steps 800".')
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work)
    base_folder = Path(__file__).resolve().parents[1] / "pipelines" / BASE_NAME
    base = load_pipeline(base_folder)
    subject, reference = subject_renders(args.num_images), sample(base, CLASS_PROMPT, args.num_images, seed=100)
    rows = [{"name": "base model (before fine-tuning)", "seed": None,
             **measure(base, subject, reference, args.num_images)}]
    for seed in args.seeds:
        for prior in (False, True):
            start = time.time()
            folder = dreambooth(work / f"seed-{seed}", prior, base_folder, seed=seed, extra=shlex.split(args.dreambooth_args))
            seconds = time.time() - start
            name = "DreamBooth + prior preservation" if prior else "DreamBooth, no prior loss"
            rows.append({"name": name, "seed": seed, "train_seconds": seconds,
                         **measure(load_pipeline(folder), subject, reference, args.num_images)})
            print(json.dumps(rows[-1]), flush=True)
    Path(args.output or work / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| model | seed | instance prompt: cFID to the subject ↓ | read as the subject font ↑ | read as A ↑ "
          "| class prompt: cFID to base ↓ | read as the subject font ↓ |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['name']} | {'—' if row['seed'] is None else row['seed']} | {row['instance_cfid']:.1f} "
              f"| {row['instance_font']:.2f} | {row['instance_A']:.2f} | {row['class_cfid']:.1f} "
              f"| {row['class_in_subject_font']:.2f} |")


if __name__ == "__main__":
    main()
