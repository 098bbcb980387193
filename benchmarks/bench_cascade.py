"""Benchmark Q3: does conditioning augmentation help a cascade (Ho et al. 2021, §4.3)? Also builds the default cascade.

    python benchmarks/bench_cascade.py train-base --output_dir out/q3/base   # 8x8 class-conditional ADM
    python benchmarks/bench_cascade.py train-sr --variant none  --output_dir out/q3/sr-none
    python benchmarks/bench_cascade.py train-sr --variant noise --output_dir out/q3/sr-noise
    python benchmarks/bench_cascade.py train-sr --variant blur  --output_dir out/q3/sr-blur
    python benchmarks/bench_cascade.py evaluate --base out/q3/base --sr out/q3/sr-none out/q3/sr-noise out/q3/sr-blur
    python benchmarks/bench_cascade.py assemble --base out/q3/base --sr out/q3/sr-noise --output_dir pipelines/glyph-cascade-8-16

The base is trained here by a short loop (``train_base``) because this benchmark predates ``training/train_adm.py``;
the three SR stages are trained by ``training/train_super_resolution.py`` with the same budget and seed, differing only
in their augmentation flags. ``evaluate`` samples full cascades (base samples → SR stage) and reports cFID against
real glyphs of the validation split at the high resolution, plus a sweep of the inference noise level (non-truncated
and truncated) for the noise-augmented stage, and the SR stages fed *true* low-res images (isolating the stage from
the base's errors).
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

from diffusion_canon.data.glyphs import CHARACTERS, load_glyphs
from diffusion_canon.models.adm_unet import ADMUNet2DModel
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_adm import ADMPipeline
from diffusion_canon.pipelines.pipeline_cascade import CascadedPipeline
from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.training.losses import training_losses

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train_super_resolution  # noqa: E402

LOW, HIGH = 8, 16
VARIANTS = {
    "none": [],
    "noise": ["--noise_augmentation_probability", "0.5", "--max_noise_level", "500"],
    "blur": ["--blur_probability", "0.5", "--blur_sigma_min", "0.4", "--blur_sigma_max", "0.6", "--blur_kernel_size", "3"],
}


def glyph_tensors(resolution: int, split: str, num_images: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_glyphs(resolution, seed=seed, split=split, num_images=num_images)
    images = torch.stack([train_super_resolution.to_tensor(image) for image in data["image"]])
    return images, torch.tensor(data["label"])


def train_base(args: argparse.Namespace) -> None:
    """A class-conditional 8x8 ADM (v-prediction, learned Σ, hybrid loss, cosine schedule) by a plain AdamW loop with EMA."""
    from diffusers.training_utils import EMAModel

    torch.manual_seed(args.seed)
    images, labels = glyph_tensors(LOW, "train", args.num_images)
    unet = ADMUNet2DModel(sample_size=LOW, in_channels=3, out_channels=6, model_channels=32, channel_mult=(1, 2),
                          num_res_blocks=1, attention_downsample_factors=(2,), num_classes=len(CHARACTERS),
                          class_names=list(CHARACTERS), use_scale_shift_norm=True, resblock_updown=True)
    scheduler = ImprovedDDPMScheduler(beta_schedule="cosine", variance_type="learned_range", prediction_type="v_prediction")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=args.learning_rate, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=0.999)
    start = time.time()
    for step in range(args.max_train_steps):
        index = torch.randint(0, len(images), (args.batch_size,))
        x0, y = images[index], labels[index]
        noise, t = torch.randn_like(x0), torch.randint(0, 1000, (args.batch_size,))
        x_t = scheduler.add_noise(x0, noise, t)
        loss = training_losses(scheduler, unet(x_t, t, y).sample, x0, x_t, noise, t, loss_type="rescaled_mse")["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        ema.step(unet.parameters())
        if step % 200 == 0:
            print(f"base step {step} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
    ema.copy_to(unet.parameters())
    save_pipeline_folder(ADMPipeline(unet=unet.eval(), scheduler=scheduler), args.output_dir)
    Path(args.output_dir, "train_time.json").write_text(json.dumps({"seconds": time.time() - start,
                                                                     "steps": args.max_train_steps}) + "\n")


def train_sr(args: argparse.Namespace) -> None:
    argv = ["--output_dir", args.output_dir, "--low_resolution", str(LOW), "--resolution", str(HIGH),
            "--max_train_steps", str(args.max_train_steps), "--train_batch_size", str(args.batch_size),
            "--learning_rate", str(args.learning_rate), "--seed", str(args.seed), "--num_images", str(args.num_images),
            "--channel_mult", "1,2", "--prediction_type", "v_prediction", "--checkpointing_steps", "0", "--validation_steps", "0", "--num_inference_steps", "25",
            "--use_ema", "--ema_decay", "0.999", *VARIANTS[args.variant]]
    start = time.time()
    train_super_resolution.main(argv)
    Path(args.output_dir, "train_time.json").write_text(json.dumps({"seconds": time.time() - start, "argv": argv}) + "\n")


def load_cascade(base: str, sr: str) -> CascadedPipeline:
    base_pipe, sr_pipe = ADMPipeline.from_pretrained(base), SuperResolutionPipeline.from_pretrained(sr)
    pipe = CascadedPipeline(base_pipe.unet, base_pipe.scheduler, sr_pipe.unet, sr_pipe.scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(args: argparse.Namespace) -> dict:
    """cFID (n images each, 16x16, against real validation glyphs) of: real glyphs of another seed (the floor); each SR
    stage fed true 8x8 images; each full cascade without inference augmentation; for noise-augmented stages, the
    inference level sweep, non-truncated and truncated. Non-truncated cascades share one base run: by the RNG contract
    a cascade equals the base followed by the SR stage continuing the same generator, so the generator state after
    the base is restored for each of them."""
    from diffusion_canon.evaluation import cfid

    n, steps = args.num_images, args.num_inference_steps
    reference = load_glyphs(HIGH, seed=1, split="validation", num_images=n)["image"]
    true_pairs = load_glyphs(seed=2, split="validation", num_images=n, resolutions=(LOW, HIGH))
    labels = [i % len(CHARACTERS) for i in range(n)]
    results: dict = {"num_images": n, "num_inference_steps": steps, "seed": args.seed, "rows": []}

    def record(name: str, images, **extra) -> None:
        value = cfid(images, reference)
        results["rows"].append({"name": name, "cfid": value, **extra})
        print(f"{name:55s} cFID {value:8.3f}", flush=True)

    record(f"real {HIGH}x{HIGH} glyphs (other seed; the floor)", true_pairs[f"image_{HIGH}"])
    base = load_cascade(args.base, args.sr[0]).base
    generator = torch.Generator().manual_seed(args.seed)
    base_samples = base(class_labels=labels, num_inference_steps=steps, generator=generator, output_type="pt").images
    after_base = generator.get_state()
    results["base_cfid_vs_real_low_res"] = cfid(base_samples, load_glyphs(LOW, seed=1, split="validation", num_images=n)["image"])
    print(f"base {LOW}x{LOW} cFID vs real {LOW}x{LOW}: {results['base_cfid_vs_real_low_res']:.3f}", flush=True)
    for sr in args.sr:
        pipe = load_cascade(args.base, sr)
        variant, stage = Path(sr).name, pipe.stages[0]
        images = stage(true_pairs[f"image_{LOW}"], class_labels=list(true_pairs["label"]), num_inference_steps=steps,
                       generator=torch.Generator().manual_seed(args.seed)).images
        record(f"{variant}: SR stage on true {LOW}x{LOW}", images, variant=variant, mode="true_low_res")
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
        base_row = f"| base {LOW}x{LOW} samples vs real {LOW}x{LOW} (seed {results.get('seed', 0)}) | {results['base_cfid_vs_real_low_res']:.2f} |"
        if base_row not in seen:
            seen.add(base_row)
            print(base_row)


def assemble(args: argparse.Namespace) -> None:
    """Save base + SR stage as one fp16 cascade folder (model card and recipe are written by hand)."""
    pipe = load_cascade(args.base, args.sr[0]).to(torch.float16)
    save_pipeline_folder(pipe, args.output_dir)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("train-base", "train-sr"):
        p = sub.add_parser(name)
        p.add_argument("--output_dir", required=True)
        p.add_argument("--max_train_steps", type=int, default=1200 if name == "train-base" else 800)
        p.add_argument("--batch_size", type=int, default=32 if name == "train-base" else 16)
        p.add_argument("--learning_rate", type=float, default=2e-4)
        p.add_argument("--num_images", type=int, default=5000)
        p.add_argument("--seed", type=int, default=0)
        if name == "train-sr":
            p.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    p = sub.add_parser("evaluate")
    p.add_argument("--base", required=True)
    p.add_argument("--sr", nargs="+", required=True)
    p.add_argument("--num_images", type=int, default=144)
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
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"train-base": train_base, "train-sr": train_sr, "evaluate": evaluate, "report": report, "assemble": assemble}[args.command](args)


if __name__ == "__main__":
    main()
