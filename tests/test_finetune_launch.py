"""Real `accelerate launch` runs of the fine-tuning scripts: two CPU processes (gloo DDP)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

from diffusion_canon.finetune.sd_base import save_tiny_sd_base
from finetune_helpers import write_images

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no"]


def launch(num_processes: int, script: str, *args: str) -> None:
    """``accelerate launch``; several CPU processes need the torchrun launcher (``--multi_gpu``) plus
    ACCELERATE_USE_CPU=1 (``--cpu --num_processes 2`` silently starts a single process)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "1"}
    command = [*ACCELERATE, "--num_processes", str(num_processes), *(["--multi_gpu"] if num_processes > 1 else []),
               str(ROOT / "training" / script), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    return save_tiny_sd_base(str(root / "base")), write_images(root / "instance", 3), root


def dreambooth_args(base, instance, out, *extra):
    return ["--pretrained_model_name_or_path", base, "--output_dir", str(out), "--instance_data_dir", str(instance),
            "--instance_prompt", "a sks font letter", "--resolution", "32", "--center_crop", "--train_batch_size", "1",
            "--num_inference_steps", "2", "--seed", "0", "--learning_rate", "1e-3", *extra]


def test_two_process_dreambooth_with_prior(setup):
    base, instance, root = setup
    out, class_dir = root / "two", root / "class"
    launch(2, "train_dreambooth.py", *dreambooth_args(
        base, instance, out, "--with_prior_preservation", "--class_data_dir", str(class_dir), "--class_prompt",
        "a letter", "--num_class_images", "5", "--sample_batch_size", "2", "--max_train_steps", "2",
        "--checkpointing_steps", "2"))
    assert sorted(os.listdir(class_dir)) == [f"class-{k:05d}.png" for k in range(5)]  # not 6
    checkpoint = set(os.listdir(out / "checkpoint-2"))
    assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors", "optimizer.bin"} <= checkpoint
    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert pipe("a sks font letter", num_inference_steps=2, height=32, width=32, output_type="np").images.shape == (
        1, 32, 32, 3)


@pytest.mark.slow
def test_two_process_resume_is_exact(setup):
    base, instance, root = setup
    common = ["--max_train_steps", "3", "--checkpointing_steps", "1", "--random_flip"]
    launch(2, "train_dreambooth.py", *dreambooth_args(base, instance, root / "straight", *common))
    launch(2, "train_dreambooth.py", *dreambooth_args(base, instance, root / "part", "--max_train_steps", "1",
                                                        "--checkpointing_steps", "1", "--random_flip"))
    launch(2, "train_dreambooth.py", *dreambooth_args(base, instance, root / "part", *common,
                                                        "--resume_from_checkpoint", "latest"))
    a = UNet2DConditionModel.from_pretrained(str(root / "straight"), subfolder="unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(str(root / "part"), subfolder="unet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_single_process_launch_lora_and_textual_inversion(setup):
    base, instance, root = setup
    with open(instance / "metadata.jsonl", "w") as f:
        f.writelines(f'{{"file_name": "{i}.png", "text": "a red letter"}}\n' for i in range(3))
    common = ["--pretrained_model_name_or_path", base, "--resolution", "32", "--max_train_steps", "2",
              "--train_batch_size", "2", "--train_data_dir", str(instance), "--num_inference_steps", "2"]
    launch(1, "train_lora.py", *common, "--output_dir", str(root / "lora"))
    launch(1, "train_textual_inversion.py", *common, "--output_dir", str(root / "ti"), "--placeholder_token",
           "<s1>", "--initializer_token", "bold")
    assert (root / "lora" / "pytorch_lora_weights.safetensors").is_file()
    assert (root / "ti" / "learned_embeds.safetensors").is_file()


def test_a_multi_process_launch_that_came_up_single_warns(tmp_path):
    """accelerate's `--cpu --num_processes 2` starts one process; the run says so instead of training alone quietly."""
    from test_train_adm import TINY

    command = [*ACCELERATE, "--cpu", "--num_processes", "2", str(ROOT / "training" / "train_adm.py"),
               "--output_dir", str(tmp_path / "adm"), *TINY, "--max_train_steps", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "accelerate launch was asked for several processes, but this run is a single one" in result.stderr
    assert "ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N" in result.stderr
