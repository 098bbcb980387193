"""Few-step students of the glyph ADM (``pipelines/adm-glyphs-32``): progressive distillation and consistency
distillation, beside the teacher with the same step counts — the demo gallery's section (the cFID figures are
benchmark Q5 / Q6, ``benchmarks/bench_few_step.py``)."""

from __future__ import annotations

import time
from pathlib import Path

from ..evaluation.glyph_samples import ink_on_paper, sample_classes
from ..image_grid import image_grid
from ..pipelines.hub import load_pipeline_folder
from ..pipelines.pipeline_adm import ADMPipeline
from ..pipelines.pipeline_edm import EDMPipeline
from .section import DemoSection

TEACHER = "adm-glyphs-32"
STUDENTS = {"consistency": "adm-glyphs-32-consistency", 1: "adm-glyphs-32-distilled-1step",
            2: "adm-glyphs-32-distilled-2step"}
PER_CLASS = 3  # samples per digit behind each row's accuracy


def few_step_section(output: Path, pipelines: Path) -> DemoSection:
    """One row of digits 0–9 per sampler (the same seeds in every row) and each row's class accuracy and time."""
    from ..evaluation import class_accuracy

    teacher = load_pipeline_folder(ADMPipeline, pipelines / TEACHER)
    consistency = load_pipeline_folder(EDMPipeline, pipelines / STUDENTS["consistency"])
    rows = [
        (f"teacher, {teacher.config.default_num_inference_steps} ancestral steps (its default)", teacher, {}),
        ("teacher, 1 DDIM step", teacher, dict(num_inference_steps=1, use_ddim=True)),
        ("teacher, 2 DDIM steps", teacher, dict(num_inference_steps=2, use_ddim=True)),
        ("progressive distillation, 1 step", load_pipeline_folder(EDMPipeline, pipelines / STUDENTS[1]), {}),
        ("progressive distillation, 2 steps", load_pipeline_folder(EDMPipeline, pipelines / STUDENTS[2]), {}),
        ("consistency distillation, 1 step", consistency, dict(num_inference_steps=1)),
        ("consistency distillation, 2 steps", consistency, dict(num_inference_steps=2)),
    ]
    names = teacher.class_names
    grid, table = [], [["sampler", "network evaluations", "class accuracy (30 samples)", "seconds for 30 samples"]]
    for caption, pipe, call in rows:
        pipe.set_progress_bar_config(disable=True)
        start = time.perf_counter()
        images, labels = sample_classes(pipe, PER_CLASS, seed=0, **call)
        seconds = time.perf_counter() - start
        grid.extend(images[::PER_CLASS])  # the first sample of each digit
        accuracy = class_accuracy(ink_on_paper(images), [names[k] for k in labels])
        table.append([caption, str(pipe.num_timesteps), f"{accuracy:.0%}", f"{seconds:.1f}"])
    image_grid(grid, len(names), scale=2, gap=2).save(output / "few_step.png")
    return DemoSection(
        title="Few-step sampling: progressive and consistency distillation (pipelines/adm-glyphs-32-*)",
        description=(
            "Students of the glyph ADM above, trained here on the CPU: progressive distillation (Salimans & Ho "
            "2022; training/train_progressive_distillation.py, 16 → 8 → 4 → 2 → 1 steps) and consistency "
            "distillation (Song et al. 2023; training/train_consistency.py). Each row uses the same seeds; the "
            "teacher's own 1- and 2-step DDIM samples are the blur the students remove. Their cFID to real renders "
            "beside the teacher's is benchmark Q5 / Q6 in benchmarks/RESULTS.md."
        ),
        images=[("few_step.png", "rows, top to bottom: " + "; ".join(caption for caption, _, _ in rows)
                 + f"; columns = {', '.join(names)}")],
        table=table,
    )
