"""training/train_unclip_decoder.py in-process: a tiny run saves a loadable UnCLIPPipeline whose decoder matches the
CLIP it was trained on, resuming from a mid-run checkpoint reproduces the uninterrupted run's weights exactly, and
``--pretrained_decoder_path`` goes on from a saved folder's decoder."""

import shutil

import pytest
import torch

from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline
from script_helpers import load_script


def argv(clip_folder, output_dir, *extra):
    return [
        "--clip_model_path", str(clip_folder), "--output_dir", str(output_dir), "--resolution", "8",
        "--num_images", "12", "--train_batch_size", "4", "--model_channels", "32", "--channel_mult", "1,2",
        "--attention_resolutions", "4", "--context_dim", "16", "--num_train_timesteps", "50", "--seed", "0",
        "--max_train_steps", "4", "--checkpointing_steps", "2", "--use_ema", "--ema_decay", "0.9",
        "--num_validation_images", "0", *extra,
    ]


def test_tiny_run_saves_a_pipeline_then_exact_resume(clip_folder, tmp_path):
    script = load_script("train_unclip_decoder")
    script.main(argv(clip_folder, tmp_path / "full", "--schedule_sampler", "loss-second-moment"))
    pipe = UnCLIPPipeline.from_pretrained(tmp_path / "full")
    config = pipe.decoder.config
    assert (config.embedding_dim, config.text_hidden_size, config.num_text_tokens, config.sample_size) == (8, 16, 24, 8)
    assert pipe.decoder_scheduler.config.variance_type == "learned_range" and pipe.prior is None
    pipe.set_progress_bar_config(disable=True)
    images = pipe.variations(torch.rand(1, 3, 16, 16), num_inference_steps=2, output_type="np").images
    assert images.shape == (1, 8, 8, 3)

    # resume from step 2 (checkpoint only) in a fresh folder: same final weights, EMA included
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed / "checkpoint-2")
    (resumed / "checkpoint-2" / "marker").touch()  # a run from scratch would re-save checkpoint-2 without it
    script.main(argv(clip_folder, resumed, "--schedule_sampler", "loss-second-moment",
                     "--resume_from_checkpoint", "latest"))
    assert (resumed / "checkpoint-2" / "marker").exists() and (resumed / "checkpoint-4").is_dir()
    again = UnCLIPPipeline.from_pretrained(resumed)
    for (name, a), b in zip(pipe.decoder.state_dict().items(), again.decoder.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_training_goes_on_from_a_pretrained_decoder(clip_folder, tmp_path):
    script = load_script("train_unclip_decoder")
    script.main(argv(clip_folder, tmp_path / "first", "--checkpointing_steps", "0"))
    first = UnCLIPPipeline.from_pretrained(tmp_path / "first").decoder
    # at learning rate 0 the run keeps the loaded weights, so the output is the first decoder itself (its config, not
    # the different --model_channels given; a fresh model would have other weights and 16 channels)
    script.main(argv(clip_folder, tmp_path / "second", "--checkpointing_steps", "0", "--learning_rate", "0",
                     "--max_train_steps", "1", "--model_channels", "16", "--seed", "1",
                     "--pretrained_decoder_path", str(tmp_path / "first")))
    second = UnCLIPPipeline.from_pretrained(tmp_path / "second").decoder
    assert second.config.model_channels == 32
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match=r"--pretrained_decoder_path .*first: its decoder has .*'sample_size': 8.*"
                                         r"--resolution need .*'sample_size': 16"):
        script.main(argv(clip_folder, tmp_path / "third", "--resolution", "16", "--attention_resolutions", "8",
                         "--pretrained_decoder_path", str(tmp_path / "first")))
    with pytest.raises(ValueError, match=r"--pretrained_decoder_path .*missing: not an UnCLIPPipeline folder"):
        script.main(argv(clip_folder, tmp_path / "fourth", "--pretrained_decoder_path", str(tmp_path / "missing")))


def test_bad_flags(clip_folder, tmp_path, capsys):
    script = load_script("train_unclip_decoder")
    with pytest.raises(ValueError, match="--text_dropout must lie in"):
        script.parse_args(argv(clip_folder, tmp_path, "--text_dropout", "1.0"))
    with pytest.raises(SystemExit):
        script.parse_args(argv(clip_folder, tmp_path, "--attention_resolutions", "5"))
    assert ("argument --attention_resolutions: invalid value '5': 5 is not a feature-map side of this network; "
            "allowed: any of 8,4") in capsys.readouterr().err
