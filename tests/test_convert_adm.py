"""The guided-/improved-diffusion converters: CLI in-process on recorded tiny checkpoints, both loading routes, every
published preset against the reference layouts, and errors that name what is wrong."""

from __future__ import annotations

import argparse
import gzip
import json
from functools import cache

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import DiffusionPipeline
from parity import assert_parity
from test_adm_models import FIXTURES, reference_cases, reference_tensors, regenerate
from test_pipeline_adm import SAMPLING_ULPS

from diffusion_canon.convert import PRESETS, convert_adm_checkpoint, load_checkpoint
from diffusion_canon.convert.adm_flags import classifier_config, model_flags, parse_flags, unet_config
from diffusion_canon.convert.adm_state_dict import classifier_rules, convert_state_dict, reference_layout, unet_rules
from diffusion_canon.commands.convert import add_parser
from diffusion_canon.models import ADMClassifierModel, ADMUNet2DModel
from diffusion_canon.pipelines import ADMPipeline


@cache
def preset_layouts() -> dict:
    with gzip.open(FIXTURES / "preset_layouts.json.gz", "rt") as f:
        return json.load(f)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="diffusion-canon")
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def save_pt(path, state_dict) -> str:
    torch.save(state_dict, path)
    return str(path)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_matches_the_reference_layout(name):
    """Each preset's flags build (on the meta device) a model whose expected reference keys and shapes equal those of
    the reference create_model / create_classifier for the same flags, with the same parameter count."""
    preset = PRESETS[name]
    recorded = preset_layouts()[name]
    parsed = model_flags(preset.model_flags, preset.repo, super_resolution=preset.super_resolution or None)
    with init_empty_weights():
        unet = ADMUNet2DModel(**unet_config(parsed.unet_kwargs, parsed.super_resolution))
    layout = reference_layout(unet_rules(unet, parsed.legacy_qkv))
    assert layout == {key: tuple(shape) for key, shape in recorded["unet"].items()}
    assert sum(p.numel() for p in unet.parameters()) == recorded["unet_parameters"]
    if preset.classifier_flags:
        with init_empty_weights():
            classifier = ADMClassifierModel(**classifier_config(preset.classifier_flags))
        layout = reference_layout(classifier_rules(classifier))
        assert layout == {key: tuple(shape) for key, shape in recorded["classifier"].items()}
        assert sum(p.numel() for p in classifier.parameters()) == recorded["classifier_parameters"]


def test_published_parameter_counts():
    """Sanity check of the recorded layouts against the sizes the papers / READMEs state."""
    count = lambda name: preset_layouts()[name]["unet_parameters"] / 1e6  # noqa: E731
    assert 265 < count("imagenet64_cond_270M_250K") < 275
    assert 275 < count("upsample_cond_500K") < 285
    assert 95 < count("imagenet64_uncond_100M_1500K") < 125
    assert 50 < count("cifar10_uncond_50M_500K") < 55


def test_guided_cli_writes_a_folder_that_samples_like_the_reference(tmp_path):
    case = reference_cases()["sample_ddpm_guided"]
    unet_pt = save_pt(tmp_path / "model.pt", regenerate(case["keys"], case["seed"]))
    clf_pt = save_pt(tmp_path / "classifier.pt", regenerate(case["classifier_keys"], case["classifier_seed"]))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {i}" for i in range(1000)))
    output = tmp_path / "pipe"
    flags = case["flags"] + " --timestep_respacing 250 --use_fp16 True"
    assert run_cli([
        "convert", "guided-diffusion", "--checkpoint", unet_pt, "--model-flags", flags,
        "--classifier", clf_pt, "--classifier-flags", case["classifier_flags"] + " --classifier_scale 3.0",
        "--class-names", str(names), "--output", str(output),
    ]) == 0  # fmt: skip

    pipe = DiffusionPipeline.from_pretrained(output, trust_remote_code=True)
    assert type(pipe) is ADMPipeline
    config = pipe.scheduler.config
    assert (config.num_train_timesteps, config.beta_schedule, config.variance_type) == (100, "cosine", "learned_range")
    assert config.rescale_timesteps is False
    assert pipe.unet.config.class_names[7] == "class 7"
    card = (output / "README.md").read_text()
    assert "license: mit" in card and "--use_new_attention_order True" in card

    pipe.set_progress_bar_config(disable=True)
    labels = [f"class {label}" for label in case["labels"]]
    images = pipe(
        class_labels=labels, timestep_respacing=case["timestep_respacing"], classifier_scale=case["classifier_scale"],
        generator=torch.Generator().manual_seed(case["noise_seed"]), output_type="pt",
    ).images  # fmt: skip
    expected = (reference_tensors()["sample_ddpm_guided.sample"] + 1) / 2
    assert_parity(images[..., ::2, ::2], expected, SAMPLING_ULPS, "images")

    direct = ADMPipeline.from_pretrained(output)
    for ours, theirs in zip(direct.classifier.state_dict().values(), pipe.classifier.state_dict().values()):
        assert torch.equal(ours, theirs)


def test_improved_cli_uses_its_defaults(tmp_path):
    """improved-diffusion's flag defaults differ (rescale_timesteps=True): the scheduler must say so, and the converted
    folder must sample like the reference."""
    case = reference_cases()["sample_improved_rescaled"]
    output = tmp_path / "pipe"
    checkpoint = save_pt(tmp_path / "model.pt", regenerate(case["keys"], case["seed"]))
    assert run_cli(["convert", "improved-diffusion", "--checkpoint", checkpoint, "--flags", case["flags"], "--output", str(output)]) == 0
    pipe = ADMPipeline.from_pretrained(output)
    assert pipe.scheduler.config.rescale_timesteps is True
    assert pipe.scheduler.config.num_train_timesteps == 4000
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        batch_size=2, timestep_respacing=case["timestep_respacing"],
        generator=torch.Generator().manual_seed(case["noise_seed"]), output_type="pt",
    ).images  # fmt: skip
    assert_parity(images, (reference_tensors()["sample_improved_rescaled.sample"] + 1) / 2, SAMPLING_ULPS, "images")


def test_super_resolution_is_detected_from_the_checkpoint(tmp_path):
    """improved-diffusion's upsampler flags carry no --large_size (its super_res_train defaults to 64 -> 256): the
    6-channel input convolution of the checkpoint tells."""
    flags = "--num_channels 32 --num_res_blocks 1 --learn_sigma True --class_cond True --attention_resolutions 16"
    parsed = model_flags(flags, "improved-diffusion", super_resolution=True)
    with init_empty_weights():
        layout_model = ADMUNet2DModel(**unet_config(parsed.unet_kwargs, super_resolution=True))
    layout = reference_layout(unet_rules(layout_model, legacy_qkv=True))
    assert layout["input_blocks.0.0.weight"] == (32, 6, 3, 3)
    checkpoint = save_pt(tmp_path / "model.pt", regenerate(list(layout.items()), 0))
    output = convert_adm_checkpoint(checkpoint, tmp_path / "pipe", repo="improved-diffusion", model_flags_string=flags)
    pipe = DiffusionPipeline.from_pretrained(output, trust_remote_code=True)
    assert type(pipe).__name__ == "SuperResolutionPipeline"  # the reference's SuperResModel, sampled as a stage
    config = pipe.unet.config
    assert (config.low_res_channels, config.sample_size, len(config.channel_mult)) == (3, 256, 6)
    assert config.augmentation_level_embedding is False


def test_mismatched_checkpoints_are_reported_by_name(tmp_path):
    case = reference_cases()["guided_cond_newqkv_updown"]
    reference = regenerate(case["keys"], case["seed"])
    parsed = model_flags(case["flags"], "guided-diffusion")
    with init_empty_weights():
        model = ADMUNet2DModel(**unet_config(parsed.unet_kwargs))
    rules = unet_rules(model, parsed.legacy_qkv)
    broken = dict(reference)
    del broken["label_emb.weight"]
    broken["extra.weight"] = torch.zeros(1)
    broken["out.2.bias"] = torch.zeros(3)
    with pytest.raises(ValueError) as error:
        convert_state_dict(broken, rules)
    message = str(error.value)
    assert "missing keys: label_emb.weight" in message
    assert "unexpected keys: extra.weight" in message
    assert "out.2.bias: checkpoint (3,) vs flags (6,)" in message


def test_preset_that_does_not_match_the_checkpoint(tmp_path):
    case = reference_cases()["guided_cond_newqkv_updown"]
    checkpoint = save_pt(tmp_path / "model.pt", regenerate(case["keys"], case["seed"]))
    with pytest.raises(ValueError, match="does not match the flags.*shape mismatches"):
        run_cli(["convert", "guided-diffusion", "--checkpoint", checkpoint, "--preset", "64x64_diffusion", "--output", str(tmp_path / "o")])


def test_bad_flags_and_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown flag --num_chanels"):
        model_flags("--num_chanels 64", "guided-diffusion")
    with pytest.raises(ValueError, match="--learn_sigma expects a boolean"):
        parse_flags("--learn_sigma maybe", {"learn_sigma": False})
    with pytest.raises(ValueError, match="no default channel_mult for image size 48"):
        model_flags("--image_size 48", "guided-diffusion")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        convert_adm_checkpoint("x.pt", tmp_path, repo="guided-diffusion", preset="nope")
    with pytest.raises(ValueError, match="exactly one of"):
        convert_adm_checkpoint("x.pt", tmp_path, repo="guided-diffusion")
    with pytest.raises(SystemExit):  # argparse: presets are listed choices
        run_cli(["convert", "improved-diffusion", "--checkpoint", "x.pt", "--preset", "64x64_diffusion", "--output", "o"])


class NotATensor:
    pass


def test_checkpoints_are_read_without_running_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(ValueError, match="is not a plain state dict that loads without running code"):
        load_checkpoint(path)
    torch.save({"weights": [torch.zeros(1)]}, path)
    with pytest.raises(ValueError, match="state dict"):
        load_checkpoint(path)


def test_half_precision_output(tmp_path):
    case = reference_cases()["guided_uncond_legacyqkv_heads"]
    checkpoint = save_pt(tmp_path / "model.pt", regenerate(case["keys"], case["seed"]))
    output = convert_adm_checkpoint(
        checkpoint, tmp_path / "pipe", repo="guided-diffusion", model_flags_string=case["flags"], dtype="bfloat16"
    )
    unet = ADMPipeline.from_pretrained(output, dtype=torch.bfloat16).unet
    assert {p.dtype for p in unet.parameters()} == {torch.bfloat16}
    generator = torch.Generator().manual_seed(case["seed"] + 1000)
    x = torch.randn(2, 3, case["size"], case["size"], generator=generator)
    with torch.no_grad():
        out = unet(x, torch.tensor(case["t"])).sample.float()
    expected = reference_tensors()[f"{case['name']}.out"]
    assert (out - expected).abs().max() < 0.05 * expected.abs().max()
