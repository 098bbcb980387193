#!/usr/bin/env bash
# Retrain pipelines/adm-glyphs-32-consistency (RECIPE.md explains the choices and the measured times):
# bash recipe.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}

# 1. consistency distillation from the shipped teacher: Heun steps of its ODE on an 18-level grid, target EMA 0.95
$PY training/train_consistency.py --teacher_model_path pipelines/adm-glyphs-32 --output_dir "$OUT" \
  --characters 0123456789 --colors black --backgrounds white --num_images 5000 --resolution 32 \
  --train_batch_size 24 --learning_rate 1e-4 --max_train_steps 1000 --start_scales 18 --start_ema 0.95 \
  --sigma_max 80 --use_ema --ema_decay 0.999 --checkpointing_steps 250 --checkpoints_total_limit 1 \
  --resume_from_checkpoint latest --num_validation_images 10 --seed 0 --save_fp16

# 2. the multistep schedules (--ts for 2 … 8 steps), by greedy ternary search on cFID
$PY training/search_consistency_timesteps.py --pipeline "$OUT" --max_steps 8 --per_class 10 \
  --characters 0123456789 --colors black --backgrounds white
