"""The published openai/consistency_models checkpoints: the ``image_sample.py`` flags its README / ``scripts/launch.sh``
samples each with (model and sampling flags), by the checkpoint's file stem. Where launch.sh names no command for a
checkpoint (the cat-256 EDM and CD ones) its family's command is used."""

from __future__ import annotations

URL = "https://openaipublic.blob.core.windows.net/consistency/{name}.pt"
_IN64 = ("--attention_resolutions 32,16,8 --class_cond True --use_scale_shift_norm True --dropout 0.0 --image_size 64 "
         "--num_channels 192 --num_head_channels 64 --num_res_blocks 3 --resblock_updown True --use_fp16 True")
_LSUN_MODEL = ("--attention_resolutions 32,16,8 --class_cond False --use_scale_shift_norm False --image_size 256 "
               "--num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True")
_LSUN = f"{_LSUN_MODEL} --dropout 0.0"
_LSUN_EDM = f"{_LSUN_MODEL} --dropout 0.1 --weight_schedule karras"

PRESETS: dict[str, str] = {
    "edm_imagenet64_ema": "--training_mode edm --sigma_max 80 --sigma_min 0.002 --s_churn 0 --steps 40 --sampler heun --attention_resolutions 32,16,8 --class_cond True --dropout 0.1 --image_size 64 --num_channels 192 --num_head_channels 64 --num_res_blocks 3 --resblock_updown True --use_fp16 True --use_scale_shift_norm True --weight_schedule karras",
    "cd_imagenet64_l2": f"--training_mode consistency_distillation --sampler multistep --ts 0,22,39 --steps 40 {_IN64} --weight_schedule uniform",
    "cd_imagenet64_lpips": f"--training_mode consistency_distillation --sampler multistep --ts 0,22,39 --steps 40 {_IN64} --weight_schedule uniform",
    "ct_imagenet64": f"--training_mode consistency_training --sampler multistep --ts 0,106,200 --steps 201 {_IN64} --weight_schedule uniform",
    "edm_bedroom256_ema": f"--training_mode edm --generator determ-indiv --sigma_max 80 --sigma_min 0.002 --s_churn 0 --steps 40 --sampler heun {_LSUN_EDM}",
    "cd_bedroom256_l2": f"--training_mode consistency_distillation --sampler multistep --ts 0,18,39 --steps 40 {_LSUN} --weight_schedule uniform",
    "cd_bedroom256_lpips": f"--training_mode consistency_distillation --sampler multistep --ts 0,17,39 --steps 40 {_LSUN} --weight_schedule uniform",
    "ct_bedroom256": f"--generator determ-indiv --training_mode consistency_distillation --sampler onestep {_LSUN} --weight_schedule uniform",
    "edm_cat256_ema": f"--training_mode edm --generator determ-indiv --sigma_max 80 --sigma_min 0.002 --s_churn 0 --steps 40 --sampler heun {_LSUN_EDM}",
    "cd_cat256_l2": f"--generator determ-indiv --training_mode consistency_distillation --sampler onestep {_LSUN} --weight_schedule uniform",
    "cd_cat256_lpips": f"--generator determ-indiv --training_mode consistency_distillation --sampler onestep {_LSUN} --weight_schedule uniform",
    "ct_cat256": f"--training_mode consistency_distillation --sampler multistep --ts 0,62,150 --steps 151 {_LSUN} --weight_schedule uniform",
}
