"""training/train_lora.py in-process: per-image captions, stock-diffusers loading, bad data fails early."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors import safe_open

from finetune_helpers import base, common_args, write_images  # noqa: F401 (fixture)
from script_helpers import fresh_accelerate_state, load_script  # noqa: F401 (fixture)

lora = load_script("train_lora")


@pytest.fixture
def captioned_dir(tmp_path):
    folder = write_images(tmp_path / "style", 4)
    captions = ["a red bold letter", "a blue serif letter", "a green letter", "the digit in mono"]
    with open(folder / "metadata.jsonl", "w") as f:
        for i, caption in enumerate(captions):
            f.write(json.dumps({"file_name": f"{i}.png", "text": caption}) + "\n")
    return folder


def sample(pipe):
    return pipe("a red bold letter", num_inference_steps=2, height=32, width=32, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


@pytest.mark.parametrize("source", ["--train_data_dir", "--dataset_name"])
def test_lora_on_captions_loads_in_diffusers(base, captioned_dir, tmp_path, source):
    out = tmp_path / "out"
    lora.main(common_args(base, out, source, str(captioned_dir), "--rank", "2", "--learning_rate", "1e-2",
                          "--cache_latents", "--center_crop", "--validation_prompt", "a red bold letter",
                          "--num_validation_images", "1"))
    with safe_open(str(out / "pytorch_lora_weights.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.r"] == 2
    pipe = StableDiffusionPipeline.from_pretrained(base)
    before = sample(pipe)
    pipe.load_lora_weights(str(out))
    assert np.abs(sample(pipe) - before).max() > 1e-4
    assert "pipe.load_lora_weights" in (out / "README.md").read_text() and (out / "image_0.png").is_file()


def test_missing_caption_fails_before_loading(base, captioned_dir, tmp_path):
    write_images(captioned_dir, 5)  # 4.png has no caption line
    with pytest.raises(ValueError, match=r"no 'text' caption in metadata.jsonl for 1 image\(s\), e.g. \['4.png'\]"):
        lora.main(common_args(base, tmp_path / "out", "--train_data_dir", str(captioned_dir)))
    with pytest.raises(ValueError, match="exactly one of --train_data_dir and --dataset_name"):
        lora.main(common_args(base, tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_lora_layers_put_adapters_on_convolutions_that_stock_diffusers_fuses(base, captioned_dir, tmp_path):
    out = tmp_path / "out"
    lora.main(common_args(base, out, "--train_data_dir", str(captioned_dir), "--rank", "2", "--lora_alpha", "4",
                          "--learning_rate", "1e-2", "--lora_layers", "to_q,conv1"))
    with safe_open(str(out / "pytorch_lora_weights.safetensors"), "pt") as f:
        assert set(json.loads(f.metadata()["lora_adapter_metadata"])["unet.target_modules"]) == {"to_q", "conv1"}
        saved = {key: f.get_tensor(key) for key in f.keys()}
    conv = "unet.down_blocks.0.resnets.0.conv1"
    down, up = saved[f"{conv}.lora_A.weight"], saved[f"{conv}.lora_B.weight"]  # (r, in, 3, 3), (out, r, 1, 1)
    assert {key.split(".lora")[0].rsplit(".", 1)[-1] for key in saved} == {"to_q", "conv1"}
    pipe = StableDiffusionPipeline.from_pretrained(base)
    weight = pipe.unet.down_blocks[0].resnets[0].conv1.weight.detach().clone()
    pipe.load_lora_weights(str(out))
    pipe.fuse_lora()
    # W' = W + (alpha / r) B A, the 3x3 kernel of A mixed by the 1x1 B: computed here from the file by hand
    expected = weight + (4 / 2) * torch.einsum("or,rikl->oikl", up[:, :, 0, 0], down)
    fused = pipe.unet.down_blocks[0].resnets[0].conv1.weight
    assert torch.allclose(fused, expected, atol=1e-6) and (expected - weight).abs().max() > 1e-4


def test_unknown_lora_layer_fails_naming_the_flag(base, captioned_dir, tmp_path):
    with pytest.raises(ValueError, match=r"--lora_layers: no Linear or Conv2d layer of the UNet2DConditionModel is "
                                         r"named 'conv9'; its layer names end in e\.g\. .*conv1"):
        lora.main(common_args(base, tmp_path / "out", "--train_data_dir", str(captioned_dir),
                              "--lora_layers", "to_q,conv9"))
    assert not (tmp_path / "out").exists()
