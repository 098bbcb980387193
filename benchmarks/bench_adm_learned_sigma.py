"""Benchmark Q1: learned Σ + hybrid loss vs fixed Σ + L_simple at the same training budget (Nichol & Dhariwal 2021,
§3.1 and §4: the learned variance improves log-likelihood and keeps sample quality with few sampling steps).

Takes ADM pipeline folders (``NAME=PATH``) trained by ``training/train_adm.py`` with identical flags except
``--variance_type`` / ``--loss_type`` (RECIPE: ``pipelines/adm-glyphs-32/RECIPE.md``) and reports, for each:

- bits/dim: the full variational bound over all T steps (``nll_bits_per_dim``, improved-diffusion's ``calc_bpd_loop``)
  on ``--bpd_images`` real test-split glyphs of the training selection;
- cFID (glyph-classifier features) and class accuracy of ``--per_class`` samples per class at each respacing in
  ``--steps`` (ancestral sampling, no guidance, the same seeds for both models), against as many real glyphs, on
  grey-stretched samples (``diffusion_canon.demo.adm.sample_quality``).

    python benchmarks/bench_adm_learned_sigma.py hybrid=pipelines/adm-glyphs-32 simple=out/adm-lsimple

Models are evaluated one after the other with the same seeds, so separate invocations give comparable rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffusion_canon.evaluation.glyph_samples import real_labels, reference_images, sample_per_class, sample_quality
from diffusion_canon.pipelines import ADMPipeline
from diffusion_canon.pipelines.hub import load_pipeline_folder
from diffusion_canon.training.losses import nll_bits_per_dim


def bits_per_dim(pipe, count: int, batch_size: int, seed: int) -> float:
    """Mean total bits/dim of ``count`` real glyphs (8-bit, scaled to [-1, 1]) under the model, labels given."""
    real = torch.from_numpy(reference_images(count)).permute(0, 3, 1, 2) * 2 - 1
    labels = torch.tensor(real_labels(count))
    generator = torch.Generator().manual_seed(seed)
    totals = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            y = labels[start : start + batch_size]
            terms = nll_bits_per_dim(lambda x, t: pipe.unet(x, t, y).sample, pipe.scheduler,
                                     real[start : start + batch_size], clip_denoised=True, generator=generator)
            totals.append(terms["total_bpd"])
    return float(torch.cat(totals).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="NAME=PATH pipeline folders, e.g. hybrid=pipelines/adm-glyphs-32")
    parser.add_argument("--bpd_images", type=int, default=20)
    parser.add_argument("--per_class", type=int, default=5)
    parser.add_argument("--steps", default="50,1000", help="Respaced sampling step counts.")
    parser.add_argument("--batch_size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not args.models or any("=" not in model for model in args.models):
        print("skipped: pass the models to compare as NAME=PATH (their recipes: pipelines/adm-glyphs-32/RECIPE.md)")
        return 0
    models = dict(model.split("=", 1) for model in args.models)
    for path in models.values():
        if not (Path(path) / "model_index.json").is_file():
            print(f"skipped: no pipeline folder at {path}")
            return 0

    steps = [int(s) for s in args.steps.split(",")]
    results = {}
    for name, path in models.items():
        pipe = load_pipeline_folder(ADMPipeline, path)
        config = pipe.scheduler.config
        row = {"variance_type": config.variance_type, "bits_per_dim": float("nan")}
        if args.bpd_images:  # 0 skips the likelihood (T network evaluations per batch)
            row["bits_per_dim"] = bits_per_dim(pipe, args.bpd_images, args.batch_size, args.seed)
        print(f"{name}: {config.variance_type}, bits/dim {row['bits_per_dim']:.3f}", flush=True)
        count = args.per_class * pipe.num_classes
        real, real_y = reference_images(count), real_labels(count)
        for n in steps:
            images, labels = sample_per_class(pipe, args.per_class, 0.0, n, args.seed, args.batch_size)
            quality = sample_quality(images, labels, pipe.class_names, real, real_y)
            row[f"cfid_{n}"], row[f"accuracy_{n}"] = quality["cfid"], quality["accuracy"]
            print(f"  {n} steps: cFID {quality['cfid']:.2f}, class accuracy {quality['accuracy']:.1%}", flush=True)
        results[name] = row

    header = ["model (Σ)", "bits/dim"] + [f"cFID @ {n} steps" for n in steps] + [f"accuracy @ {n}" for n in steps]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name, row in results.items():
        cells = [f"{name} ({row['variance_type']})", f"{row['bits_per_dim']:.3f}"]
        cells += [f"{row[f'cfid_{n}']:.2f}" for n in steps]
        print("| " + " | ".join(cells + [f"{row[f'accuracy_{n}']:.1%}" for n in steps]) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
