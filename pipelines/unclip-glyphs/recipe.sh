#!/usr/bin/env bash
# Retrain pipelines/unclip-glyphs (RECIPE.md explains the choices and the measured times): bash recipe.sh OUT_DIR
set -euo pipefail
OUT=${1:?usage: recipe.sh OUT_DIR}
PY=${PYTHON:-.venv/bin/python}
WORK=$OUT.work

# 1. the glyph CLIP: contrastive with one-attribute hard negatives and attribute probes (retrieval.json reports top-1)
$PY -m diffusion_canon.cli train-clip --output_dir "$WORK/clip" --hard_negatives --label_weight 1 --num_images 10000 \
  --num_steps 2000 --batch_size 256 --learning_rate 1e-3 --projection_dim 64 --hidden_size 64 --num_layers 2 \
  --vision_hidden_size 128 --vision_num_layers 4 --vision_num_heads 4 --patch_size 8 --num_eval_images 200
# 2. the prior: text embedding -> image embedding (x0, cosine, 10% condition dropout, EMA)
$PY training/train_unclip_prior.py --clip_model_path "$WORK/clip" --output_dir "$WORK/prior" --num_images 5000 \
  --max_train_steps 800 --train_batch_size 256 --learning_rate 3e-4 --lr_scheduler cosine --lr_warmup_steps 50 \
  --use_ema --ema_decay 0.999 --checkpointing_steps 200 --seed 0
# 3. the 32x32 decoder on frozen-CLIP image embeddings (+ caption tokens), at a constant learning rate
$PY training/train_unclip_decoder.py --clip_model_path "$WORK/clip" --prior_model_path "$WORK/prior" --output_dir "$WORK/decoder" \
  --num_images 5000 --resolution 32 --model_channels 32 --channel_mult 1,2,2 --num_res_blocks 1 \
  --attention_resolutions 16,8 --num_head_channels 32 --context_dim 64 --prediction_type v_prediction \
  --train_batch_size 32 --learning_rate 3e-4 --adam_weight_decay 0.0 --max_train_steps 4500 \
  --use_ema --ema_decay 0.999 --checkpointing_steps 250 --checkpoints_total_limit 2 --resume_from_checkpoint latest \
  --num_validation_images 8 --validation_steps 0 --num_inference_steps 25 --guidance_scale 3.0 --seed 0 --save_fp16
# 4. that decoder (its fp16 save) trained on as many steps again, fresh Adam, cosine decay; ships CLIP and the prior
$PY training/train_unclip_decoder.py --clip_model_path "$WORK/clip" --prior_model_path "$WORK/prior" --output_dir "$OUT" \
  --pretrained_decoder_path "$WORK/decoder" --num_images 5000 --resolution 32 --context_dim 64 \
  --prediction_type v_prediction --train_batch_size 32 --learning_rate 3e-4 --lr_scheduler cosine --lr_warmup_steps 100 \
  --adam_weight_decay 0.0 --max_train_steps 4500 --use_ema --ema_decay 0.999 --checkpointing_steps 250 \
  --checkpoints_total_limit 2 --resume_from_checkpoint latest --num_validation_images 8 --validation_steps 0 \
  --num_inference_steps 25 --guidance_scale 3.0 --seed 0 --save_fp16
