"""Q5 / Q6 / P7: few-step students of ``pipelines/adm-glyphs-32`` against their teacher, in one run.

Every row draws ``--per_class`` samples of each digit (the same seeds in every row) and scores them as benchmark Q2
does (:func:`diffusion_canon.evaluation.glyph_samples.sample_quality`): the glyph classifier's accuracy on the asked
digit and cFID against as many real test-split renders. Rows: the teacher with its ancestral sampler at its recorded
default steps and more, DDIM (η = 0) on the teacher at 1/2/4/8 steps, the progressive-distillation students at their
steps, the consistency models (distilled, trained) at 1/2/4/8 steps (multistep at the folder's searched ``--ts``).
P7: wall time of two images from the 1-step students against the teacher at its default steps and at the fewest
measured steps (ancestral or DDIM) that match the student's cFID.

    OMP_NUM_THREADS=2 python benchmarks/bench_few_step.py --per_class 50 \\
        --pd pipelines/adm-glyphs-32-distilled-{1,2}step out/models/adm-glyphs-32-distilled.work/steps-{4,8} \\
        --ct out/ct-glyphs out/ct-from-teacher-glyphs

Without arguments: the shipped students (distilled 1- and 2-step, consistency) and no consistency-training row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from diffusion_canon.checkout import pipelines_folder
from diffusion_canon.evaluation.glyph_samples import real_labels, reference_images, sample_classes, sample_quality
from diffusion_canon.pipelines import ADMPipeline, EDMPipeline
from diffusion_canon.pipelines.hub import load_pipeline_folder

STEPS = (1, 2, 4, 8)


def wall_time(pipe, rounds: int = 5, **call) -> float:
    """Median seconds for two images (digits 3 and 7)."""
    times = []
    for seed in range(rounds):
        start = time.perf_counter()
        pipe(class_labels=["3", "7"], generator=torch.Generator().manual_seed(seed), output_type="np", **call)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shipped = pipelines_folder(None)
    parser.add_argument("--teacher", default=str(shipped / "adm-glyphs-32"))
    parser.add_argument("--pd", nargs="*", default=[str(shipped / f"adm-glyphs-32-distilled-{n}step") for n in (1, 2)],
                        help="Progressive-distillation students (EDMPipeline folders with distilled_steps).")
    parser.add_argument("--cd", default=str(shipped / "adm-glyphs-32-consistency"),
                        help="A consistency-distillation EDMPipeline folder.")
    parser.add_argument("--ct", nargs="*", default=[], help="Consistency-training EDMPipeline folders.")
    parser.add_argument("--per_class", type=int, default=50)
    parser.add_argument("--teacher_steps", default="16,25,50", help="Ancestral step counts for the teacher.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--students_only", action="store_true", help="No teacher rows and no P7 (rows to add).")
    parser.add_argument("--json", help="Also write the rows here.")
    args = parser.parse_args()

    teacher = load_pipeline_folder(ADMPipeline, args.teacher)
    names = teacher.class_names
    count = args.per_class * len(names)
    real = reference_images(count)
    real_classes = real_labels(count)
    rows, pipes = [], {}

    def measure(group: str, name: str, pipe, steps: int, **call) -> dict:
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        images, labels = sample_classes(pipe, args.per_class, seed=args.seed, **call)
        quality = sample_quality(images, labels, names, real, real_classes)
        row = {"group": group, "model": name, "steps": steps, "cfid": quality["cfid"], "accuracy": quality["accuracy"],
               "seconds": time.perf_counter() - start}
        rows.append(row)
        print(json.dumps(row), flush=True)
        return row

    default_steps = teacher.config.default_num_inference_steps
    for steps in [] if args.students_only else sorted({default_steps, *map(int, args.teacher_steps.split(","))}):
        measure("teacher", "teacher, ancestral", teacher, steps, num_inference_steps=steps)
    for steps in [] if args.students_only else STEPS:
        measure("teacher", "teacher, DDIM", teacher, steps, num_inference_steps=steps, use_ddim=True)
    students = [load_pipeline_folder(EDMPipeline, folder) for folder in args.pd]
    for pipe in sorted(students, key=lambda pipe: pipe.config.distilled_steps):
        steps = pipe.config.distilled_steps
        pipes[f"PD {steps}"] = pipe
        measure("PD", f"PD {steps}-step student", pipe, steps, num_inference_steps=steps)
    consistency = [("CD", "CD", args.cd)] if args.cd else []
    consistency += [(f"CT {i}", f"CT ({Path(folder).name})", folder) for i, folder in enumerate(args.ct)]
    for label, name, folder in consistency:
        pipes[label] = load_pipeline_folder(EDMPipeline, folder)
        for steps in STEPS:
            measure(label.split()[0], name, pipes[label], steps, num_inference_steps=steps)

    # P7: 1-step students against the teacher at its default and at the fewest steps reaching the student's cFID
    teacher_rows = [r for r in rows if r["group"] == "teacher"]  # ancestral or DDIM
    timing = {} if args.students_only else {"teacher default": wall_time(teacher, num_inference_steps=default_steps)}
    one_step = [("PD 1", "PD 1-step student"), *((label, name) for label, name, _ in consistency)]
    for label, name in [] if args.students_only else one_step:
        if label not in pipes:
            continue
        student = next(r for r in rows if r["model"] == name and r["steps"] == 1)
        seconds = wall_time(pipes[label], num_inference_steps=1)
        matched = [r for r in teacher_rows if r["cfid"] <= student["cfid"]]
        entry = {"student_seconds": seconds, "student_cfid": student["cfid"],
                 "ratio_to_teacher_default": timing["teacher default"] / seconds}
        if matched:
            fewest = min(matched, key=lambda r: r["steps"])
            ddim = dict(use_ddim=True) if fewest["model"] == "teacher, DDIM" else {}
            entry.update(matched_teacher=f"{fewest['model']}, {fewest['steps']} steps",
                         ratio_at_equal_quality=wall_time(teacher, num_inference_steps=fewest["steps"], **ddim) / seconds)
        timing[label] = entry
        print(json.dumps({"P7": label, **entry}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "P7": timing}, indent=2) + "\n")


if __name__ == "__main__":
    main()
