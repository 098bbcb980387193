"""Wall time of two images from each shipped ADM-family folder at its recorded default steps (a call that names no
schedule), on this machine: ``OMP_NUM_THREADS=2 python benchmarks/bench_default_steps.py [--rounds 5]``."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffusion_canon.checkout import pipelines_folder
from diffusion_canon.pipelines import ADMPipeline, CascadedPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folders = pipelines_folder(None)
    for name, cls in (("adm-glyphs-32", ADMPipeline), ("glyph-cascade-16-64", CascadedPipeline)):
        pipe = cls.from_pretrained(folders / name, dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        times = []
        for seed in range(args.rounds):
            start = time.perf_counter()
            pipe(class_labels=["3", "7"], generator=torch.Generator().manual_seed(seed))
            times.append(time.perf_counter() - start)
        print(f"{name}: default_num_inference_steps={pipe.config.default_num_inference_steps}, {pipe.num_timesteps} "
              f"network evaluations; 2 images: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}) over {args.rounds} rounds")


if __name__ == "__main__":
    main()
