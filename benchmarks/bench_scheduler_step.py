"""Benchmark P2: ``ImprovedDDPMScheduler.step`` vs diffusers' ``DDPMScheduler.step``, learned_range variance, the same
batch and model output, timed alternately in one run. Prints the ratio ours / diffusers (goal ≤ 1.0).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scheduler_step.py [--batch 8 --size 64 --rounds 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDPMScheduler

from diffusion_canon.schedulers import ImprovedDDPMScheduler


def time_steps(scheduler, timesteps, output, sample, generator) -> float:
    start = time.perf_counter()
    for t in timesteps:
        scheduler.step(output, t, sample, generator=generator)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="timesteps per timed block")
    parser.add_argument("--rounds", type=int, default=30, help="alternating ours/diffusers blocks")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    config = dict(num_train_timesteps=1000, beta_schedule="linear", variance_type="learned_range", clip_sample=True)
    ours, theirs = ImprovedDDPMScheduler(**config), DDPMScheduler(**config)
    ours.set_timesteps(args.steps)
    theirs.set_timesteps(args.steps)
    g = torch.Generator(device).manual_seed(0)
    sample = torch.randn(args.batch, 3, args.size, args.size, generator=g, device=device)
    output = torch.randn(args.batch, 6, args.size, args.size, generator=g, device=device).tanh()
    ours_ts, theirs_ts = list(ours.timesteps), list(theirs.timesteps)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):  # warm-up (allocator, coefficient caches)
        time_steps(ours, ours_ts, output, sample, g), time_steps(theirs, theirs_ts, output, sample, g)
    ratios, ours_times, theirs_times = [], [], []
    for _ in range(args.rounds):
        sync()
        a = time_steps(ours, ours_ts, output, sample, g)
        sync()
        b = time_steps(theirs, theirs_ts, output, sample, g)
        sync()
        ours_times.append(a)
        theirs_times.append(b)
        ratios.append(a / b)
    # The box is shared: other processes only ever add time, so the fastest block of each side is the least noisy
    # estimate; the median of the paired (adjacent-in-time) ratios is printed as a cross-check.
    ratio = min(ours_times) / min(theirs_times)
    print(
        f"P2 step() ratio ours/diffusers = {ratio:.3f} (fastest of {args.rounds} alternating blocks of {args.steps} "
        f"steps each; median paired ratio {statistics.median(ratios):.3f}; batch {args.batch}x3x{args.size}x{args.size}, "
        f"learned_range, {device.type})"
    )
    return ratio


if __name__ == "__main__":
    main()
