#!/usr/bin/env bash
# Retrain pipelines/adm-glyphs-32-distilled-1step (RECIPE.md explains the choices and the measured times):
# bash recipe.sh OUT_DIR. Both distilled folders come from one run (16 -> 8 -> 4 -> 2 -> 1 steps), shared beside OUT.
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}
WORK=$(dirname "$OUT")/adm-glyphs-32-distilled.work
STEPS=1

# the rounds resume from their last checkpoint: the second recipe to run finds the run done and only copies
$PY training/train_progressive_distillation.py --teacher_model_path pipelines/adm-glyphs-32 --output_dir "$WORK" \
  --characters 0123456789 --colors black --backgrounds white --num_images 5000 --resolution 32 \
  --train_batch_size 16 --learning_rate 1e-4 --teacher_steps 16 --student_steps 1 --steps_per_round 500 \
  --num_validation_images 10 --validation_steps 250 --checkpointing_steps 250 --checkpoints_total_limit 1 \
  --resume_from_checkpoint latest --seed 0 --save_fp16
cp -r "$WORK/steps-$STEPS" "$OUT.tmp" && rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
