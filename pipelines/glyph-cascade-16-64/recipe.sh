#!/usr/bin/env bash
# Retrain pipelines/glyph-cascade-16-64 (RECIPE.md explains the choices and the measured times): bash recipe.sh OUT_DIR
# The exact training arguments are in benchmarks/bench_cascade.py (BASE_ARGS, SR_ARGS, VARIANTS), shared with Q3.
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}
WORK=$OUT.work

# 1. base: 16x16 class-conditional ADM (training/train_adm.py), 4000 steps
$PY benchmarks/bench_cascade.py train-base --output_dir "$WORK/base"
# 2. SR 16 -> 64 with Gaussian-noise conditioning augmentation (training/train_super_resolution.py), 2000 steps
$PY benchmarks/bench_cascade.py train-sr --variant noise --resolution 64 --max_train_steps 2000 --output_dir "$WORK/sr-16-64"
# 3. one fp16 folder
$PY benchmarks/bench_cascade.py assemble --base "$WORK/base" --sr "$WORK/sr-16-64" --output_dir "$OUT"
