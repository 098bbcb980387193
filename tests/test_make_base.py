"""`diffusion-canon make-base` end to end at toy size: an SD folder that stock diffusers loads, fp16, with a recipe."""

from __future__ import annotations

import argparse

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from diffusion_canon.commands import make_base as make_base_command
from diffusion_canon.finetune import make_base


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    make_base_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["make-base", *argv])


def test_bad_resolution():
    with pytest.raises(ValueError, match="--resolution must be a multiple of 4"):
        make_base.run(parse(["--resolution", "30"]))


@pytest.mark.slow
def test_make_base_tiny_run_loads_in_diffusers(tmp_path):
    out = tmp_path / "base"
    args = parse(["--output_dir", str(out), "--resolution", "16", "--num_images", "32", "--vae_steps", "2",
                  "--unet_steps", "2", "--batch_size", "8", "--num_inference_steps", "2"])
    assert args.func(args) == 0
    stored = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the latents' std
    assert "sks" in pipe.tokenizer.get_vocab() or "sks</w>" in pipe.tokenizer.get_vocab()
    recipe = (out / "RECIPE.md").read_text()
    assert "diffusion-canon make-base" in recipe and "--unet_steps 2" in recipe
    assert (out / "README.md").is_file() and (out / "image_0.png").is_file()
