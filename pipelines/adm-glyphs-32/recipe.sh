#!/usr/bin/env bash
# Retrain pipelines/adm-glyphs-32 (RECIPE.md explains the choices and the measured times): bash recipe.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}
WORK=$OUT.work

# 1. the U-Net: hybrid loss, learned Σ, v-prediction, cosine schedule, EMA, label dropout 0.1
$PY training/train_adm.py --output_dir "$WORK/unet" \
  --characters 0123456789 --colors black --backgrounds white --num_images 5000 --resolution 32 \
  --model_channels 32 --channel_mult 1,2,2 --num_res_blocks 1 --attention_resolutions 16,8 --num_head_channels 32 \
  --dropout 0.0 --class_dropout 0.1 --variance_type learned_range --loss_type rescaled_mse --beta_schedule cosine \
  --prediction_type v_prediction \
  --train_batch_size 16 --learning_rate 3e-4 --adam_weight_decay 0.0 --max_train_steps 4500 --use_ema --ema_decay 0.999 \
  --checkpointing_steps 500 --checkpoints_total_limit 2 --resume_from_checkpoint latest \
  --num_validation_images 10 --validation_steps 4500 --num_inference_steps 25 --seed 0 --save_fp16

# 2. the noisy classifier on the same diffusion and data; with the U-Net's folder it writes the whole pipeline
$PY training/train_classifier.py --pretrained_model_name_or_path "$WORK/unet" --output_dir "$OUT" \
  --characters 0123456789 --colors black --backgrounds white --num_images 5000 --resolution 32 \
  --model_channels 32 --channel_mult 1,2,2 --num_res_blocks 1 --attention_resolutions 16,8 --num_head_channels 32 \
  --train_batch_size 32 --learning_rate 3e-4 --adam_weight_decay 0.05 --max_train_steps 800 \
  --checkpointing_steps 200 --checkpoints_total_limit 1 --resume_from_checkpoint latest \
  --num_eval_images 500 --seed 0 --save_fp16
