"""training/train_super_resolution.py in-process: glyph pairs with augmentation, exact resume, an image folder, flags
(the ADM scripts' network and diffusion flags, with their meanings)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
import train_super_resolution  # noqa: E402

from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline  # noqa: E402
from diffusion_canon.training.adm_args import add_adm_network_args, add_diffusion_args, add_objective_args  # noqa: E402
from script_helpers import load_script  # noqa: E402

TINY = ["--low_resolution", "8", "--resolution", "16", "--model_channels", "32", "--channel_mult", "1",
        "--train_batch_size", "4", "--num_validation_images", "1", "--num_inference_steps", "2", "--seed", "0",
        "--num_train_timesteps", "50"]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def test_glyph_pairs_with_augmentation_resume_exactly(tmp_path):
    flags = [*TINY, "--num_images", "8", "--characters", "AB", "--max_train_steps", "4", "--checkpointing_steps", "2",
             "--noise_augmentation_probability", "0.5", "--blur_probability", "0.5", "--prediction_type", "v_prediction"]
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "full")])
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "part"), "--max_train_steps", "2"])
    train_super_resolution.main([*flags, "--output_dir", str(tmp_path / "part"),
                                 "--resume_from_checkpoint", str(tmp_path / "part" / "checkpoint-2")])
    full, resumed = weights(tmp_path / "full"), weights(tmp_path / "part")
    assert all(torch.equal(full[key], resumed[key]) for key in full)
    pipe = SuperResolutionPipeline.from_pretrained(tmp_path / "full")
    assert pipe.unet.config.low_res_sample_size == 8 and pipe.unet.config.num_classes == 36
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.config.default_num_inference_steps == 2  # the --num_inference_steps it validated with
    assert (tmp_path / "full" / "README.md").read_text().count("8×8 → 16×16") == 1


def test_image_folder_is_downsampled_into_pairs(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (80 * i, 30, 200)).save(folder / f"{i}.png")
    pairs, names = train_super_resolution.load_pairs(
        train_super_resolution.parse_args([*TINY, "--output_dir", str(tmp_path / "o"), "--train_data_dir", str(folder)]))
    assert names is None and len(pairs) == 3
    assert pairs.high.shape == (3, 3, 16, 16) and pairs.low.shape == (3, 3, 8, 8)
    torch.testing.assert_close(pairs.low[1, :, 0, 0], torch.tensor([80, 30, 200]) / 127.5 - 1, atol=1e-2, rtol=0)
    train_super_resolution.main([*TINY, "--output_dir", str(tmp_path / "o"), "--train_data_dir", str(folder),
                                 "--max_train_steps", "1", "--checkpointing_steps", "0"])
    assert SuperResolutionPipeline.from_pretrained(tmp_path / "o").unet.config.num_classes is None


@pytest.mark.parametrize("flags, match", [
    (["--low_resolution", "16"], "below --resolution"),
    (["--max_noise_level", "60", "--noise_augmentation_probability", "0.5"], "exceeds --num_train_timesteps"),
    (["--blur_probability", "2"], "blur_probability"),
    (["--blur_kernel_size", "4"], "kernel_size"),
    (["--characters", "a?"], "--characters"),
])
def test_bad_flags(tmp_path, flags, match):
    with pytest.raises(ValueError, match=match):
        train_super_resolution.main([*TINY, "--output_dir", str(tmp_path), "--num_images", "4", *flags])


def test_network_flags_are_the_adm_scripts(tmp_path):
    """One vocabulary: the same network flags give the same network in train_adm.py and here, --attention_resolutions
    being sides of the high-resolution --resolution maps (guided-diffusion's sr_create_model: large_size // side)."""
    train_adm = load_script("train_adm")
    network = ["--resolution", "64", "--channel_mult", "1,1,2,2", "--attention_resolutions", "16,8",
               "--num_head_channels", "32", "--model_channels", "64", "--num_res_blocks", "2", "--dropout", "0.1"]
    sr = train_super_resolution.parse_args([*TINY, "--output_dir", str(tmp_path), *network])
    adm = train_adm.parse_args(["--output_dir", str(tmp_path), *network])
    assert train_super_resolution.network_kwargs(sr) == train_adm.network_kwargs(adm)
    assert train_super_resolution.network_kwargs(sr)["attention_downsample_factors"] == [4, 8]


def script_flags(name: str, monkeypatch) -> set[str]:
    """The option strings of the parser a script builds (captured where it hands it to ``parse_training_args``)."""
    script, captured = load_script(name), []

    def capture(parser, argv):
        captured.append(parser)
        raise LookupError

    monkeypatch.setattr(script, "parse_training_args", capture)
    with pytest.raises(LookupError):
        script.parse_args(["--output_dir", "unused"])
    return {flag for action in captured[0]._actions for flag in action.option_strings}


def test_every_adm_script_takes_the_shared_flags(monkeypatch):
    shared = argparse.ArgumentParser(add_help=False)
    add_adm_network_args(shared, model_channels=32, num_res_blocks=1, dropout=0.0)
    add_diffusion_args(shared)
    add_objective_args(shared)
    flags = {flag for action in shared._actions for flag in action.option_strings}
    # Σ fixed by design: the unCLIP decoder's is learned; the classifier has no denoising loss
    absent = {"train_unclip_decoder": {"--variance_type"}, "train_classifier": {"--variance_type", "--loss_type"}}
    for name in ("train_adm", "train_classifier", "train_super_resolution", "train_unclip_decoder"):
        assert flags - script_flags(name, monkeypatch) == absent.get(name, set()), name


@pytest.mark.parametrize("flags, message", [
    # a downsample factor (the old meaning) where a side is expected: sides at 16 px with one level are just 16
    (["--attention_resolutions", "4"], "argument --attention_resolutions: invalid value '4': 4 is not a feature-map "
                                       "side of this network; allowed: any of 16 (the sides of the --resolution 16"),
    (["--resolution", "20", "--channel_mult", "1,2,2,2"], "argument --channel_mult: invalid value '1,2,2,2': its 4 "
                                                          "levels halve --resolution 20 3 times"),
    (["--noise_schedule", "cosine"], "unrecognized arguments: --noise_schedule"),  # the shared --beta_schedule
    (["--no-learn_sigma"], "unrecognized arguments: --no-learn_sigma"),  # the shared --variance_type
])
def test_bad_network_flags_are_argparse_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_:
        train_super_resolution.parse_args([*TINY, "--output_dir", str(tmp_path), *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_fixed_variance_importance_sampling_attention_fp16(tmp_path):
    """The shared flags this script used to lack act here as in train_adm.py."""
    out = tmp_path / "o"
    train_super_resolution.main([*TINY, "--output_dir", str(out), "--num_images", "4", "--characters", "AB",
                                 "--max_train_steps", "2", "--checkpointing_steps", "0", "--num_validation_images", "0",
                                 "--variance_type", "fixed_small", "--loss_type", "mse", "--beta_schedule", "linear",
                                 "--schedule_sampler", "loss-second-moment", "--attention_resolutions", "16",
                                 "--num_head_channels", "16", "--save_fp16"])
    pipe = SuperResolutionPipeline.from_pretrained(out)
    config = pipe.unet.config
    assert (config.out_channels, config.attention_downsample_factors, config.num_head_channels) == (3, [1], 16)
    assert (pipe.scheduler.config.variance_type, pipe.scheduler.config.beta_schedule) == ("fixed_small", "linear")
    assert all(w.dtype == torch.float16 for w in weights(out).values())
