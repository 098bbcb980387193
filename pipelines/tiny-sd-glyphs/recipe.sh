#!/usr/bin/env bash
# Retrain pipelines/tiny-sd-glyphs (RECIPE.md gives the measured time): bash recipe.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}

# glyph BPE tokenizer, AutoencoderKL (1200 steps), UNet2DConditionModel + CLIPTextModel (3000 steps), fp16 folder
$PY -m diffusion_canon.cli make-base --output_dir "$OUT" --resolution 32 --num_images 5000 --vae_steps 1200 \
  --unet_steps 3000 --batch_size 64 --learning_rate 1e-3 --kl_weight 1e-4 --caption_dropout 0.1 --seed 0 --dtype fp16
