"""training/train_adm.py in-process on tiny configs: the output folder loads both ways, resume is exact with the
importance sampler's history restored (and would not be without it), labelled image folders work, bad input fails
before training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image
from safetensors.torch import load_file

from diffusion_canon.pipelines import ADMPipeline
from script_helpers import load_script, reset_accelerate_state
from diffusion_canon.training.timestep_samplers import LossSecondMomentResampler

train_adm = load_script("train_adm")

TINY = ["--resolution", "16", "--num_images", "16", "--characters", "0123", "--model_channels", "32",
        "--channel_mult", "1,2", "--num_res_blocks", "1", "--attention_resolutions", "8", "--train_batch_size", "8",
        "--learning_rate", "1e-3", "--seed", "0", "--num_inference_steps", "2", "--num_validation_images", "0",
        "--checkpointing_steps", "0", "--dropout", "0"]


def unet_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_hybrid_loss_cfg_model_loads_both_ways_and_samples(tmp_path):
    out = tmp_path / "adm"
    train_adm.main(["--output_dir", str(out), *TINY, "--max_train_steps", "2", "--class_dropout", "0.5",
                    "--use_ema", "--num_validation_images", "4", "--save_fp16"])
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["out_channels"] == 6 and config["null_class_embedding"] and config["class_names"] == list("0123")
    assert all(w.dtype == torch.float16 for w in unet_weights(out).values())
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["variance_type"] == "learned_range" and scheduler["beta_schedule"] == "cosine"
    card = (out / "README.md").read_text()
    assert "hybrid loss" in card and "label dropout 0.5" in card and "0, 1, 2, 3" in card
    assert (out / "image_0.png").is_file()

    for pipe in (ADMPipeline.from_pretrained(out), DiffusionPipeline.from_pretrained(out, trust_remote_code=True)):
        assert type(pipe).__name__ == "ADMPipeline" and pipe.unet.dtype == torch.float32
        assert pipe.config.default_num_inference_steps == 2  # the --num_inference_steps it validated with
        images = pipe(["0", "3"], num_inference_steps=2, output_type="np",
                      generator=torch.Generator().manual_seed(0)).images
        assert images.shape == (2, 16, 16, 3) and np.isfinite(images).all()
        # classifier-free guidance through the null class (one image: ADMPipeline's CFG batch > 1 is reported broken)
        guided = pipe("3", num_inference_steps=2, guidance_scale=2.0, output_type="np").images
        assert guided.shape == (1, 16, 16, 3) and np.isfinite(guided).all()


def resume_args(out: Path, steps: int, *extra: str) -> list[str]:
    # T = 2 timesteps: the importance sampler's history (10 losses per t) fills within the first steps, after which
    # its weights decide which t are drawn and how each loss is weighted
    return ["--output_dir", str(out), *TINY, "--num_train_timesteps", "2", "--schedule_sampler", "loss-second-moment",
            "--use_ema", "--class_dropout", "0.2", "--max_train_steps", str(steps), "--checkpointing_steps", "4",
            *extra]


def test_resume_is_exact_including_the_importance_sampler(tmp_path, monkeypatch):
    straight, resumed, forgetful = tmp_path / "straight", tmp_path / "resumed", tmp_path / "forgetful"
    train_adm.main(resume_args(straight, 8))
    for out in (resumed, forgetful):
        reset_accelerate_state()
        train_adm.main(resume_args(out, 4))  # "crashes" right after checkpoint-4
    reset_accelerate_state()
    train_adm.main(resume_args(resumed, 8, "--resume_from_checkpoint", "latest"))
    reference, after_resume = unet_weights(straight), unet_weights(resumed)
    assert all(torch.equal(reference[k], after_resume[k]) for k in reference)

    # the same resume with the sampler's history lost ends elsewhere: the test above can fail
    reset_accelerate_state()
    monkeypatch.setattr(LossSecondMomentResampler, "load_state_dict", lambda self, state: None)
    train_adm.main(resume_args(forgetful, 8, "--resume_from_checkpoint", "latest"))
    lost = unet_weights(forgetful)
    assert not all(torch.equal(reference[k], lost[k]) for k in reference)


def test_prediction_type_reaches_the_scheduler_and_the_loss(tmp_path):
    runs = {}
    for prediction_type in ("epsilon", "v_prediction"):
        reset_accelerate_state()
        out = tmp_path / prediction_type
        train_adm.main(["--output_dir", str(out), *TINY, "--max_train_steps", "1", "--prediction_type", prediction_type])
        scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
        assert scheduler["prediction_type"] == prediction_type
        runs[prediction_type] = unet_weights(out)
    # same seed, data and noise: only the regression target differs, so the weights after one step must too
    assert not all(torch.equal(runs["epsilon"][k], runs["v_prediction"][k]) for k in runs["epsilon"])


def test_image_folder_with_class_subfolders_and_fixed_variance(tmp_path):
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(data / name / f"{i}.png")
    out = tmp_path / "folder"
    train_adm.main(["--output_dir", str(out), *TINY, "--train_data_dir", str(data), "--max_train_steps", "1",
                    "--variance_type", "fixed_large", "--loss_type", "mse", "--beta_schedule", "linear"])
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["class_names"] == ["cat", "dog"] and config["out_channels"] == 3
    assert "image folder" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "/nonexistent/dataset"], "--dataset_name '/nonexistent/dataset' could not be loaded"),
        (["--train_data_dir", "/nonexistent/folder"], "--train_data_dir '/nonexistent/folder' is not an existing"),
        (["--label_column", "species"], "--label_column 'species' is not a column"),
        (["--image_column", "picture"], "--image_column 'picture' is not a column"),
        (["--characters", "ab?"], "--characters 'ab\\?': unknown characters"),
        (["--unconditional", "--class_dropout", "0.1"], "--class_dropout 0.1 needs labels"),
        (["--class_dropout", "1.0"], "--class_dropout must lie in"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        train_adm.main(["--output_dir", str(tmp_path / "bad"), *TINY, "--max_train_steps", "1", *extra])
    assert not (tmp_path / "bad" / "unet").exists()


@pytest.mark.parametrize("extra, message", [
    # the reference's meaning: feature-map sides (16 and 8 at --resolution 16 with two levels), not downsample factors
    (["--attention_resolutions", "32"], "argument --attention_resolutions: invalid value '32': 32 is not a "
     "feature-map side of this network; allowed: any of 16,8 (the sides of the --resolution 16 feature maps at the "
     "2 levels of --channel_mult 1,2; downsample factor = 16 // side), comma-separated, or '' for no attention"),
    (["--attention_resolutions", "8,4,2"], "invalid value '8,4,2': 4,2 are not feature-map sides"),
    (["--attention_resolutions", "0"], "argument --attention_resolutions: invalid value '0': expected"),
    (["--channel_mult", "1,2,2,2,2,2"], "argument --channel_mult: invalid value '1,2,2,2,2,2': its 6 levels halve "
     "--resolution 16 5 times, which needs --resolution divisible by 32; allowed at --resolution 16: at most 5"),
    (["--channel_mult", "1,-2"], "argument --channel_mult: invalid value '1,-2': expected"),
    (["--num_head_channels", "24"], "argument --num_head_channels: invalid value 24: the attention widths 64"),
    (["--num_head_channels", "0"], "argument --num_head_channels: invalid value '0': expected"),
])
def test_bad_network_flags_are_argparse_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        train_adm.parse_args(["--output_dir", str(tmp_path / "bad"), *TINY, *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_attention_resolutions_are_feature_map_sides(tmp_path):
    """guided-diffusion's create_model: downsample factor = image_size // side; -1 head channels = --num_heads heads."""
    args = train_adm.parse_args(["--output_dir", str(tmp_path), *TINY, "--resolution", "32", "--channel_mult",
                                 "1,2,2", "--attention_resolutions", "8,16", "--num_head_channels", "-1",
                                 "--num_heads", "4"])
    kwargs = train_adm.network_kwargs(args)
    assert kwargs["attention_downsample_factors"] == [2, 4]
    assert (kwargs["num_heads"], kwargs["num_head_channels"]) == (4, None)
