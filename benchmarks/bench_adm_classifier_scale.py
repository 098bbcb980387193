"""Benchmark Q2: the fidelity/diversity trade-off of classifier guidance (Dhariwal & Nichol 2021, §4.3, Fig. 4).

Samples ``--per_class`` images of every class of ``pipelines/adm-glyphs-32`` at each classifier scale (the same
initial noise at every scale) and reports class accuracy (glyph classifier), cFID against as many real test-split
glyphs of the training selection, and within-class diversity (mean pairwise glyph-classifier feature distance of
same-class samples, relative to that of the real glyphs), measured on grey-stretched samples (``ink_on_paper``: the
default's samples have tinted backgrounds the glyph classifier misreads; the raw accuracy is reported too). Writes a
plot next to this script.

    python benchmarks/bench_adm_classifier_scale.py --scales 0,1,2,4,8 --per_class 10 --steps 25
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffusion_canon.evaluation.glyph_samples import (
    DEFAULT_PIPELINE_NAME as PIPELINE_NAME, real_labels, reference_images, sample_per_class, sample_quality,
)
from diffusion_canon.pipelines import ADMPipeline
from diffusion_canon.pipelines.hub import load_pipeline_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default=str(Path(__file__).resolve().parents[1] / "pipelines" / PIPELINE_NAME))
    parser.add_argument("--scales", default="0,1,2,4,8")
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--steps", type=int, default=25, help="Respaced ancestral sampling steps.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=str(Path(__file__).with_name("adm_classifier_scale.png")))
    parser.add_argument("--json", default=None, help="Also write the rows here.")
    args = parser.parse_args(argv)
    if not (Path(args.pipeline) / "model_index.json").is_file():
        print(f"skipped: no pipeline folder at {args.pipeline}")
        return 0

    pipe = load_pipeline_folder(ADMPipeline, args.pipeline)
    names = pipe.class_names
    count = args.per_class * len(names)
    real, real_y = reference_images(count), real_labels(count)
    rows = []
    print(f"{count} samples per scale ({args.per_class} per class), {args.steps} steps; cFID vs {count} real glyphs")
    print("| classifier scale | class accuracy | class accuracy, raw | cFID | diversity (÷ real) |")
    print("|---|---|---|---|---|")
    for scale in (float(s) for s in args.scales.split(",")):
        start = time.perf_counter()
        images, labels = sample_per_class(pipe, args.per_class, scale, args.steps, args.seed)
        row = {"scale": scale, **sample_quality(images, labels, names, real, real_y),
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(f"| {scale:g} | {row['accuracy']:.1%} | {row['accuracy_raw']:.1%} | {row['cfid']:.2f} | "
              f"{row['diversity']:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.plot, f"{args.per_class} samples/class, {args.steps} steps")
    return 0


def plot(rows: list[dict], path: str, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = [r["scale"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8))
    for ax, key, label in zip(axes, ("accuracy", "cfid", "diversity"),
                              ("class accuracy", "cFID (lower = closer to real)", "diversity ÷ real")):
        ax.plot(scales, [r[key] for r in rows], "o-")
        ax.set_xlabel("classifier scale")
        ax.set_title(label, fontsize=9)
    fig.suptitle(f"adm-glyphs-32: classifier guidance ({subtitle})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"plot: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
