"""Benchmark Q3: does conditioning augmentation help a cascade (Ho et al. 2021, §4.3)? Also builds the default cascade.

    python benchmarks/bench_cascade.py train-base --output_dir out/q3/base   # 16x16 class-conditional ADM
    python benchmarks/bench_cascade.py train-sr --variant none  --output_dir out/q3/sr-none    # 16 -> 32
    python benchmarks/bench_cascade.py train-sr --variant noise --output_dir out/q3/sr-noise
    python benchmarks/bench_cascade.py train-sr --variant blur  --output_dir out/q3/sr-blur
    python benchmarks/bench_cascade.py evaluate --base out/q3/base --sr out/q3/sr-none out/q3/sr-noise out/q3/sr-blur
    python benchmarks/bench_cascade.py report q3-*.json
    python benchmarks/bench_cascade.py assemble --base out/q3/base --sr out/sr-16-64 --output_dir pipelines/glyph-cascade-16-64

The base is ``training/train_adm.py`` and the SR stages ``training/train_super_resolution.py``, called in-process
with the arguments below; the three Q3 stages share budget and seed and differ only in their augmentation flags.
``evaluate`` samples full cascades (base samples → SR stage) and reports cFID against real glyphs of the validation
split at the high resolution, plus a sweep of the inference noise level (non-truncated and truncated) for the
noise-augmented stage, and the SR stages fed *true* low-res images (isolating the stage from the base's errors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from diffusion_canon.data.glyphs import load_glyphs
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_adm import ADMPipeline
from diffusion_canon.pipelines.pipeline_cascade import CascadedPipeline
from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train_adm  # noqa: E402
import train_super_resolution  # noqa: E402

# The cascade's world: ten digits in six inks on white paper (every font and style of the split).
CHARACTERS, COLORS, BACKGROUNDS = "0123456789", "black,red,green,blue,orange,purple", "white"
BASE_RESOLUTION = 16
BASE_ARGS = [
    "--characters", CHARACTERS, "--colors", COLORS, "--backgrounds", BACKGROUNDS, "--num_images", "5000",
    "--resolution", str(BASE_RESOLUTION), "--model_channels", "32", "--channel_mult", "1,2,2", "--num_res_blocks", "1",
    "--attention_resolutions", "8,4", "--num_head_channels", "32", "--dropout", "0.0", "--class_dropout", "0.1",
    "--variance_type", "learned_range", "--loss_type", "rescaled_mse", "--beta_schedule", "cosine",
    "--prediction_type", "v_prediction", "--train_batch_size", "32", "--learning_rate", "3e-4",
    "--adam_weight_decay", "0.0", "--max_train_steps", "4000", "--use_ema", "--ema_decay", "0.999",
    "--checkpointing_steps", "500", "--checkpoints_total_limit", "2", "--resume_from_checkpoint", "latest",
    "--num_validation_images", "10", "--validation_steps", "4000", "--num_inference_steps", "25", "--seed", "0",
    "--save_fp16",
]
SR_ARGS = [
    "--characters", CHARACTERS, "--num_images", "5000", "--low_resolution", str(BASE_RESOLUTION),
    "--model_channels", "32", "--num_res_blocks", "1", "--prediction_type", "v_prediction",
    "--train_batch_size", "16", "--learning_rate", "3e-4", "--use_ema", "--ema_decay", "0.999",
    "--checkpointing_steps", "250", "--checkpoints_total_limit", "2", "--resume_from_checkpoint", "latest",
    "--validation_steps", "0", "--num_validation_images", "8", "--num_inference_steps", "25", "--seed", "0",
]
VARIANTS = {
    "none": [],
    "noise": ["--noise_augmentation_probability", "0.5", "--max_noise_level", "500"],
    "blur": ["--blur_probability", "0.5", "--blur_sigma_min", "0.4", "--blur_sigma_max", "0.6", "--blur_kernel_size", "3"],
}


def glyphs(resolution: int | tuple[int, int], seed: int, num_images: int):
    """Validation renders of the cascade's world (``resolution`` a pair: aligned low/high columns)."""
    sides = dict(resolutions=resolution) if isinstance(resolution, tuple) else dict(resolution=resolution)
    return load_glyphs(seed=seed, split="validation", characters=CHARACTERS, colors=COLORS.split(","),
                       backgrounds=BACKGROUNDS, num_images=num_images, **sides)


def timed(main, argv: list[str], output_dir: str) -> None:
    start = time.time()
    main(argv)
    Path(output_dir, "train_time.json").write_text(json.dumps({"seconds": time.time() - start, "argv": argv}) + "\n")


def base_argv(args: argparse.Namespace) -> list[str]:
    """``train-base``'s arguments of ``training/train_adm.py``."""
    return ["--output_dir", args.output_dir, *BASE_ARGS]


def sr_argv(args: argparse.Namespace) -> list[str]:
    """``train-sr``'s arguments of ``training/train_super_resolution.py``: the network flags are the ADM scripts'
    (``--attention_resolutions`` would list sides of the ``--resolution`` maps; these stages have no attention
    level, only the middle block's single head, the script's defaults)."""
    channel_mult = {32: "1,2,2", 64: "1,1,2,2"}.get(args.resolution, "1,2,2")
    return ["--output_dir", args.output_dir, "--resolution", str(args.resolution), "--channel_mult", channel_mult,
            "--max_train_steps", str(args.max_train_steps), *SR_ARGS, *VARIANTS[args.variant]]


def train_base(args: argparse.Namespace) -> None:
    timed(train_adm.main, base_argv(args), args.output_dir)


def train_sr(args: argparse.Namespace) -> None:
    timed(train_super_resolution.main, sr_argv(args), args.output_dir)


def load_cascade(base: str, sr: str) -> CascadedPipeline:
    base_pipe, sr_pipe = ADMPipeline.from_pretrained(base), SuperResolutionPipeline.from_pretrained(sr)
    pipe = CascadedPipeline(base_pipe.unet, base_pipe.scheduler, sr_pipe.unet, sr_pipe.scheduler,
                            default_num_inference_steps=[base_pipe.default_sampling, sr_pipe.default_sampling])
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(torch.float32)


def evaluate(args: argparse.Namespace) -> dict:
    """cFID (n images each, at the SR side, against real validation glyphs) of: real glyphs of another seed (the
    floor); each SR stage fed true low-res images; each full cascade without inference augmentation; for
    noise-augmented stages, the inference level sweep, non-truncated and truncated. Non-truncated cascades share one
    base run: by the RNG contract a cascade equals the base followed by the SR stage continuing the same generator,
    so the generator state after the base is restored for each of them."""
    from diffusion_canon.evaluation import cfid

    n, steps = args.num_images, args.num_inference_steps
    first = load_cascade(args.base, args.sr[0])
    low, high = first.base.unet.config.sample_size, first.stages[0].unet.config.sample_size
    reference = glyphs(high, seed=1, num_images=n)["image"]
    true_pairs = glyphs((low, high), seed=2, num_images=n)
    labels = [i % len(CHARACTERS) for i in range(n)]
    results: dict = {"num_images": n, "num_inference_steps": steps, "seed": args.seed, "low": low, "high": high,
                     "rows": []}

    def record(name: str, images, **extra) -> None:
        value = cfid(images, reference)
        results["rows"].append({"name": name, "cfid": value, **extra})
        print(f"{name:55s} cFID {value:8.3f}", flush=True)

    record(f"real {high}x{high} glyphs (other seed; the floor)", true_pairs[f"image_{high}"])
    generator = torch.Generator().manual_seed(args.seed)
    base_samples = first.base(class_labels=labels, num_inference_steps=steps, generator=generator, output_type="pt").images
    after_base = generator.get_state()
    results["base_cfid_vs_real_low_res"] = cfid(base_samples, glyphs(low, seed=1, num_images=n)["image"])
    print(f"base {low}x{low} cFID vs real {low}x{low}: {results['base_cfid_vs_real_low_res']:.3f}", flush=True)
    for sr in args.sr:
        pipe = load_cascade(args.base, sr)
        variant, stage = Path(sr).name, pipe.stages[0]
        images = stage(true_pairs[f"image_{low}"], class_labels=list(true_pairs["label"]), num_inference_steps=steps,
                       generator=torch.Generator().manual_seed(args.seed)).images
        record(f"{variant}: SR stage on true {low}x{low}", images, variant=variant, mode="true_low_res")
        for level in [None, *args.sweep] if "noise" in variant else [None]:
            start = time.time()
            images = stage(base_samples, class_labels=labels, num_inference_steps=steps, noise_level=level,
                           generator=torch.Generator().set_state(after_base)).images
            record(f"{variant}: cascade, s={level}", images, variant=variant, noise_level=level, truncate=False,
                   seconds=time.time() - start)
            if level is not None:
                start = time.time()
                images = pipe(class_labels=labels, num_inference_steps=steps, noise_level=level, truncate=True,
                              generator=torch.Generator().manual_seed(args.seed)).images
                record(f"{variant}: cascade, s={level} truncated", images, variant=variant, noise_level=level,
                       truncate=True, seconds=time.time() - start)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return results


def report(args: argparse.Namespace) -> None:
    """Markdown table of one or more ``evaluate`` JSON files (rows in order, duplicates of the floor dropped)."""
    print("| configuration | cFID ↓ |\n| --- | ---: |")
    seen = set()
    for path in args.results:
        results = json.loads(Path(path).read_text())
        for row in results["rows"]:
            if row["name"] not in seen:
                seen.add(row["name"])
                print(f"| {row['name']} | {row['cfid']:.2f} |")
        low = results["low"]
        base_row = (f"| base {low}x{low} samples vs real {low}x{low} (seed {results['seed']}) "
                    f"| {results['base_cfid_vs_real_low_res']:.2f} |")
        if base_row not in seen:
            seen.add(base_row)
            print(base_row)


def assemble(args: argparse.Namespace) -> None:
    """Save base + SR stage as one fp16 cascade folder (model card and recipe are written by hand)."""
    pipe = load_cascade(args.base, args.sr[0]).to(torch.float16)
    save_pipeline_folder(pipe, args.output_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-base")
    p.add_argument("--output_dir", required=True)
    p = sub.add_parser("train-sr")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p.add_argument("--resolution", type=int, default=32, help="The stage's output side (its input is 16).")
    p.add_argument("--max_train_steps", type=int, default=1500)
    p = sub.add_parser("evaluate")
    p.add_argument("--base", required=True)
    p.add_argument("--sr", nargs="+", required=True)
    p.add_argument("--num_images", type=int, default=200)
    p.add_argument("--num_inference_steps", type=int, default=25)
    p.add_argument("--sweep", type=int, nargs="*", default=[50, 150, 300])
    p.add_argument("--seed", type=int, default=0, help="Seed of the sampling generators.")
    p.add_argument("--output", default="cascade_q3.json")
    p = sub.add_parser("report")
    p.add_argument("results", nargs="+")
    p = sub.add_parser("assemble")
    p.add_argument("--base", required=True)
    p.add_argument("--sr", nargs=1, required=True)
    p.add_argument("--output_dir", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"train-base": train_base, "train-sr": train_sr, "evaluate": evaluate, "report": report, "assemble": assemble}[args.command](args)


if __name__ == "__main__":
    main()
