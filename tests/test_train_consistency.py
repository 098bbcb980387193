"""training/train_consistency.py in-process on tiny configs: distillation from a VP (ADM) teacher and consistency
training from scratch write EDMPipeline folders that load both ways and sample in one step; resume is exact with
the target network restored from the checkpoint (and would not be without it); bad flags fail before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from script_helpers import load_script, reset_accelerate_state
from test_edm_pipeline import tiny_unet

train_consistency = load_script("train_consistency")

DATA = ["--resolution", "8", "--num_images", "8", "--characters", "ABC", "--train_batch_size", "4",
        "--learning_rate", "1e-3", "--seed", "0", "--num_validation_images", "0", "--checkpointing_steps", "0",
        "--start_scales", "6", "--grid_size", "6"]
NETWORK = ["--model_channels", "32", "--channel_mult", "1", "--num_res_blocks", "1", "--attention_resolutions", "",
           "--dropout", "0"]


@pytest.fixture(scope="module")
def vp_teacher(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher") / "adm"
    scheduler = ImprovedDDPMScheduler(num_train_timesteps=50, beta_schedule="cosine")
    save_pipeline_folder(ADMPipeline(tiny_unet(), scheduler), folder)  # 3 classes named a, b, c; 8×8
    return folder


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_distillation_from_a_vp_teacher_loads_and_samples_in_one_step(tmp_path, vp_teacher):
    out = tmp_path / "cd"
    train_consistency.main([*DATA, "--teacher_model_path", str(vp_teacher), "--max_train_steps", "2",
                            "--output_dir", str(out)])
    for pipe in (DiffusionPipeline.from_pretrained(out, trust_remote_code=True),):
        assert type(pipe).__name__ == "EDMPipeline" and pipe.scheduler.config.boundary_condition
        pipe.set_progress_bar_config(disable=True)
        images = pipe(class_labels=[0, 2], output_type="np").images
        assert images.shape == (2, 8, 8, 3) and pipe.num_timesteps == 1
        pipe(class_labels=[0], num_inference_steps=2, output_type="np")
        assert pipe.num_timesteps == 2
    assert "consistency_distillation" in (out / "README.md").read_text()


def resume_args(out: Path, steps: int, teacher: Path, *extra: str) -> list[str]:
    return [*DATA, "--teacher_model_path", str(teacher), "--output_dir", str(out), "--max_train_steps", str(steps),
            "--checkpointing_steps", "2", "--start_ema", "0.5", *extra]


def test_resume_is_exact_including_the_target_network(tmp_path, vp_teacher, monkeypatch):
    straight, resumed, forgetful = tmp_path / "straight", tmp_path / "resumed", tmp_path / "forgetful"
    train_consistency.main(resume_args(straight, 4, vp_teacher))
    for out in (resumed, forgetful):
        reset_accelerate_state()
        train_consistency.main(resume_args(out, 2, vp_teacher))
    reset_accelerate_state()
    train_consistency.main(resume_args(resumed, 4, vp_teacher, "--resume_from_checkpoint", "latest"))
    reference, after = weights(straight), weights(resumed)
    assert all(torch.equal(reference[k], after[k]) for k in reference)

    # without the target network in the checkpoint the resumed run ends elsewhere: the test above can fail
    reset_accelerate_state()
    monkeypatch.setattr(train_consistency.TargetNetwork, "load_state_dict", lambda self, state, strict=True: None)
    train_consistency.main(resume_args(forgetful, 4, vp_teacher, "--resume_from_checkpoint", "latest"))
    lost = weights(forgetful)
    assert not all(torch.equal(reference[k], lost[k]) for k in reference)


def test_consistency_training_from_scratch(tmp_path):
    out = tmp_path / "ct"
    train_consistency.main([*DATA, *NETWORK, "--training_mode", "consistency_training", "--max_train_steps", "2",
                            "--scale_mode", "progressive", "--target_ema_mode", "adaptive", "--end_scales", "10",
                            "--loss_norm", "l1", "--output_dir", str(out)])
    pipe = DiffusionPipeline.from_pretrained(out, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert pipe(class_labels=["B"], output_type="np").images.shape == (1, 8, 8, 3)
    reset_accelerate_state()  # iCT's options together
    train_consistency.main([*DATA, *NETWORK, "--training_mode", "consistency_training", "--max_train_steps", "2",
                            "--scale_mode", "ict", "--end_scales", "24", "--index_distribution", "lognormal",
                            "--loss_norm", "pseudo-huber", "--weight_schedule", "ict", "--output_dir", str(tmp_path / "ict")])
    assert (tmp_path / "ict" / "model_index.json").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["--training_mode", "consistency_distillation"], "teacher_model_path"),
    (["--training_mode", "consistency_training", "--start_scales", "1"], "start_scales"),
    (["--training_mode", "consistency_training", "--loss_norm", "lpips"], "loss_norm"),
])
def test_bad_flags_fail_before_training(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        train_consistency.main([*DATA, *NETWORK, "--output_dir", str(tmp_path / "x"), "--max_train_steps", "1", *extra])
    assert message in capsys.readouterr().err
