#!/usr/bin/env bash
# Retrain pipelines/tiny-sd-glyphs (RECIPE.md gives the measured time): bash recipe.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}

# glyph BPE tokenizer; AutoencoderKL with the ink-weighted L1 (2000 steps); UNet2DConditionModel (8000 steps) on the
# frozen hard-negative glyph CLIP text tower of pipelines/unclip-glyphs; both stages cosine-decayed; fp16 folder.
# Both stages also see 1000 outline glyphs (the held-out style) in the training fonts, captioned "hollow" only, never
# "outlined": the word the textual-inversion and LoRA demos teach.
$PY -m diffusion_canon.cli make-base --output_dir "$OUT" --resolution 32 --num_images 5000 --vae_steps 2000 \
  --vae_ink_weight 3 --unet_steps 8000 --lr_scheduler cosine --batch_size 64 --learning_rate 1e-3 --kl_weight 1e-4 \
  --caption_dropout 0.1 --seed 0 --dtype fp16 --text_encoder_path pipelines/unclip-glyphs/text_encoder \
  --held_out_style_images 1000 --held_out_style_word hollow
