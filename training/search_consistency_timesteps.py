"""Choose a glyph consistency model's multistep schedules by search and record them in its folder.

For n = 2 … ``--max_steps`` the n-step ``--ts`` keeps the (n − 1)-step one and adds the grid index of least cFID
(glyph-classifier Fréchet distance of ``--per_class`` samples per class to as many real renders), found by ternary
search within each gap of the schedule — the greedy search Song et al. (2023) describe, with cFID in place of FID
(:mod:`diffusion_canon.evaluation.timestep_search`). The folder's ``multistep_timesteps`` then holds them, so
``pipe(class_labels=..., num_inference_steps=n)`` uses them (model_index.json is replaced atomically; the weights
are not touched).

    python training/search_consistency_timesteps.py --pipeline out/cd-glyphs --max_steps 8 \\
        --characters 0123456789 --colors black --backgrounds white
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffusion_canon.evaluation.glyph_samples import reference_images, sample_classes
from diffusion_canon.evaluation.timestep_search import greedy_timesteps
from diffusion_canon.pipelines import EDMPipeline
from diffusion_canon.pipelines.hub import load_pipeline_folder
from diffusion_canon.training.arguments import COUNT


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="An EDMPipeline folder of a consistency model.")
    parser.add_argument("--max_steps", type=COUNT, default=8)
    parser.add_argument("--per_class", type=COUNT, default=20, help="Samples per class (and real renders) per score.")
    parser.add_argument("--characters", required=True, help="The classes' characters, as the model was trained.")
    parser.add_argument("--colors", default="black")
    parser.add_argument("--backgrounds", default="white")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[int, list[int]]:
    from diffusion_canon.evaluation import cfid

    args = parse_args(argv)
    pipe = load_pipeline_folder(EDMPipeline, args.pipeline)
    if not pipe.is_consistency_model:
        raise ValueError(f"--pipeline {args.pipeline!r} is not a consistency model (its scheduler has no boundary "
                         "condition): only consistency models sample with multistep --ts")
    if pipe.num_classes is None or "".join(pipe.class_names) != args.characters:
        raise ValueError(f"--characters {args.characters!r} must be the model's classes, "
                         f"{''.join(pipe.class_names or [])!r}")
    pipe.set_progress_bar_config(disable=True)
    selection = {"characters": args.characters, "colors": args.colors, "backgrounds": args.backgrounds}
    real = reference_images(args.per_class * pipe.num_classes, selection, seed=args.seed)
    scores: dict[tuple[int, ...], float] = {}

    def score(ts: list[int]) -> float:
        images, _ = sample_classes(pipe, args.per_class, seed=args.seed, timesteps=ts)
        scores[tuple(ts)] = cfid(np.asarray(images), real)
        print(f"--ts {','.join(map(str, ts))}: cFID {scores[tuple(ts)]:.2f}", flush=True)
        return scores[tuple(ts)]

    schedules = greedy_timesteps(score, pipe.config.grid_size, args.max_steps)
    found = {str(n): ",".join(map(str, ts)) for n, ts in schedules.items()}
    index = Path(args.pipeline) / "model_index.json"
    config = json.loads(index.read_text())
    config["multistep_timesteps"] = found
    staging = index.with_name(".model_index.json.staging")
    staging.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(staging, index)  # readers see the old or the new index, never half of one
    print(json.dumps({"multistep_timesteps": found, "cfid": {n: round(scores[tuple(ts)], 2)
                                                              for n, ts in schedules.items() if tuple(ts) in scores}}))
    return schedules


if __name__ == "__main__":
    main(sys.argv[1:])
