"""training/train_dreambooth.py in-process on a tiny random SD base: outputs load in stock diffusers, the defects of
the diffusers example are fixed, bad input fails before training."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from safetensors import safe_open

from diffusion_canon.finetune.class_images import generate_class_images
from diffusion_canon.finetune.objective import dreambooth_loss
from finetune_helpers import base, common_args, write_images  # noqa: F401 (fixture)
from script_helpers import (  # noqa: F401 (fixture)
    fresh_accelerate_state,
    load_script,
    reset_accelerate_state,
)

dreambooth = load_script("train_dreambooth")


@pytest.fixture
def instance_dir(tmp_path) -> Path:
    folder = write_images(tmp_path / "instance", 3)
    (folder / ".DS_Store").write_bytes(b"\x00\x01junk")
    return folder


def dreambooth_args(base, instance_dir, output_dir, *extra) -> list[str]:
    return common_args(base, output_dir, "--instance_data_dir", str(instance_dir), "--instance_prompt",
                       "a sks font letter", "--center_crop", *extra)


def test_dreambooth_prior_preservation_snr_full_pipeline_loads(base, instance_dir, tmp_path, caplog):
    out, class_dir = tmp_path / "out", tmp_path / "class"
    with caplog.at_level(logging.WARNING):
        dreambooth.main(dreambooth_args(
            base, instance_dir, out, "--with_prior_preservation", "--class_data_dir", str(class_dir),
            "--class_prompt", "a letter", "--num_class_images", "3", "--sample_batch_size", "2",
            "--snr_gamma", "5.0", "--validation_prompt", "a sks font letter", "--num_validation_images", "2",
        ))
    assert "skipping 1 non-image file(s): ['.DS_Store']" in caplog.text
    assert sorted(os.listdir(class_dir)) == ["class-00000.png", "class-00001.png", "class-00002.png"]
    pipe = StableDiffusionPipeline.from_pretrained(str(out))  # stock diffusers loads the result
    trained, original = pipe.unet, UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    assert not torch.equal(trained.conv_in.weight, original.conv_in.weight)
    image = pipe("a sks font letter", num_inference_steps=2, height=32, width=32, output_type="np").images[0]
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
    card = (out / "README.md").read_text()
    assert "a sks font letter" in card and "prior preservation loss" in card and "image_1.png" in card
    assert (out / "validation" / "step-000002.png").is_file()  # the final validation run


def test_dreambooth_lora_loads_with_metadata_and_kohya(base, instance_dir, tmp_path):
    out = tmp_path / "lora"
    dreambooth.main(dreambooth_args(base, instance_dir, out, "--use_lora", "--rank", "2", "--lora_alpha", "4",
                                    "--train_text_encoder", "--export_kohya", "--learning_rate", "1e-2"))
    weights = out / "pytorch_lora_weights.safetensors"
    with safe_open(str(weights), "pt") as f:
        metadata = json.loads(f.metadata()["lora_adapter_metadata"])
        keys = list(f.keys())
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    assert metadata["unet.r"] == 2 and metadata["unet.lora_alpha"] == 4
    assert set(metadata["unet.target_modules"]) == {"to_q", "to_k", "to_v", "to_out.0"}

    pipe = StableDiffusionPipeline.from_pretrained(base)
    kwargs = dict(num_inference_steps=2, height=32, width=32, output_type="np")
    before = pipe("a sks font letter", generator=torch.Generator().manual_seed(0), **kwargs).images
    pipe.load_lora_weights(str(out))
    after = pipe("a sks font letter", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert np.abs(after - before).max() > 1e-4
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe("a sks font letter", generator=torch.Generator().manual_seed(0), **kwargs).images
    np.testing.assert_allclose(fused, after, atol=1e-4)
    with safe_open(str(out / "lora_kohya.safetensors"), "pt") as f:
        kohya = {k: f.get_tensor(k) for k in f.keys()}
    alphas = [v for k, v in kohya.items() if k.endswith(".alpha")]
    assert alphas and all(float(a) == 4.0 for a in alphas) and any(k.startswith("lora_te1_") for k in kohya)
    assert "load_lora_weights" in (out / "README.md").read_text()


def test_dreambooth_resume_is_exact(base, instance_dir, tmp_path):
    args = ["--max_train_steps", "3", "--checkpointing_steps", "1", "--random_flip"]
    dreambooth.main(dreambooth_args(base, instance_dir, tmp_path / "straight", *args))
    dreambooth.main(dreambooth_args(base, instance_dir, tmp_path / "part", *args[:1], "1", *args[2:]))
    reset_accelerate_state()
    dreambooth.main(dreambooth_args(base, instance_dir, tmp_path / "part", *args, "--resume_from_checkpoint",
                                    "latest"))
    a = UNet2DConditionModel.from_pretrained(str(tmp_path / "straight"), subfolder="unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(str(tmp_path / "part"), subfolder="unet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_snr_weighting_with_prior_preservation_uses_instance_half():
    """Closed form: instance MSEs weighted by min(SNR, gamma)/SNR at the instance timesteps; prior MSEs unweighted."""
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    torch.manual_seed(0)
    pred, target = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    timesteps = torch.tensor([10, 900, 10, 900])
    abar = scheduler.alphas_cumprod[timesteps]
    snr = abar / (1 - abar)
    mse = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    expected = (mse[:2] * torch.minimum(snr[:2], torch.tensor(5.0)) / snr[:2]).mean() + 0.5 * mse[2:].mean()
    got = dreambooth_loss(pred, target, timesteps, scheduler, snr_gamma=5.0, prior_loss_weight=0.5,
                          with_prior_preservation=True)
    torch.testing.assert_close(got, expected)


class FakePipeline:
    def set_progress_bar_config(self, **_):
        pass

    def __call__(self, prompts, generator, **_):
        return SimpleNamespace(images=[Image.new("RGB", (4, 4), (int(g.initial_seed()) % 255, 0, 0))
                                       for g in generator])


def test_exactly_num_class_images_with_two_processes(tmp_path):
    """4 missing images on 2 processes running concurrently (threads, a real barrier): exactly 4 distinct new files
    (the diffusers example pads each process's share and writes more than asked)."""
    folder = tmp_path / "class"
    write_images(folder, 1)
    args = SimpleNamespace(seed=0, num_inference_steps=1, guidance_scale=1.0, resolution=4)
    barrier = threading.Barrier(2)

    def process(rank):
        accelerator = SimpleNamespace(is_main_process=rank == 0, wait_for_everyone=barrier.wait,
                                      process_index=rank, num_processes=2)
        generate_class_images(accelerator, FakePipeline, str(folder), "a letter", 5, 3, args)

    threads = [threading.Thread(target=process, args=(rank,)) for rank in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(os.listdir(folder)) == ["0.png", "class-00001.png", "class-00002.png", "class-00003.png",
                                          "class-00004.png"]


@pytest.mark.parametrize("extra, message", [
    (["--instance_data_dir", "/nonexistent", "--instance_prompt", "x"], "--instance_data_dir '/nonexistent' is not"),
    (["--instance_data_dir", "EMPTY", "--instance_prompt", "x"], "contains no image files"),
    (["--instance_data_dir", "INSTANCE", "--instance_prompt", "x", "--with_prior_preservation"],
     "--with_prior_preservation needs --class_prompt"),
    (["--instance_data_dir", "INSTANCE", "--instance_prompt", "x", "--resume_from_checkpoint", "/no/such"],
     "does not exist"),
    (["--instance_data_dir", "INSTANCE", "--instance_prompt", "x", "--resolution", "30"], "multiple of 8"),
])
def test_bad_input_fails_before_training(base, instance_dir, tmp_path, extra, message):
    (tmp_path / "empty").mkdir()
    extra = [{"EMPTY": str(tmp_path / "empty"), "INSTANCE": str(instance_dir)}.get(a, a) for a in extra]
    argv = common_args(base, tmp_path / "out", *extra)
    with pytest.raises(ValueError, match=message):
        dreambooth.main(argv)
    assert not (tmp_path / "out").exists()


def test_base_not_in_sd_layout(instance_dir, tmp_path):
    (tmp_path / "notsd" / "unet").mkdir(parents=True)
    with pytest.raises(ValueError, match="not in Stable Diffusion layout: missing"):
        dreambooth.main(dreambooth_args(str(tmp_path / "notsd"), instance_dir, tmp_path / "out"))


def test_lora_trains_in_fp32_under_bf16(base, instance_dir, tmp_path):
    """--mixed_precision bf16: frozen weights bf16, LoRA weights (trained, saved) fp32."""
    out = tmp_path / "bf16"
    dreambooth.main(dreambooth_args(base, instance_dir, out, "--use_lora", "--rank", "2", "--mixed_precision", "bf16"))
    with safe_open(str(out / "pytorch_lora_weights.safetensors"), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.float32}


def test_model_card_snippet_runs(base, instance_dir, tmp_path):
    """The card's load snippet is real code: execute it against the output folder."""
    out = tmp_path / "card"
    dreambooth.main(dreambooth_args(base, instance_dir, out, "--use_lora", "--rank", "2"))
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(snippet.replace("(\"a sks font letter\")", "(\"a sks font letter\", num_inference_steps=2)"), namespace)
    assert namespace["image"].size == (32, 32)


def test_latents_are_cached_without_changing_the_training(base, instance_dir, tmp_path, monkeypatch):
    """The VAE posterior of fixed pixels is computed once (automatically with --center_crop, or forced by
    --cache_latents), and each step still samples z ~ q(z|x) from the same RNG: the weights equal those of a run that
    encodes every step. Without --center_crop the 32-pixel images are random-cropped to 32 pixels: the same pixels,
    encoded per step."""
    encoded = []
    encode = AutoencoderKL.encode
    monkeypatch.setattr(AutoencoderKL, "encode", lambda vae, x, *a, **k: (encoded.append(len(x)), encode(vae, x))[1])

    def train(name, *flags):
        encoded.clear()
        reset_accelerate_state()
        argv = [a for a in dreambooth_args(base, instance_dir, tmp_path / name) if a != "--center_crop"]
        dreambooth.main([*argv, *flags, "--max_train_steps", "3"])
        return sum(encoded), UNet2DConditionModel.from_pretrained(str(tmp_path / name), subfolder="unet").state_dict()

    per_step, plain = train("plain")
    assert per_step == 2 + 1 + 2  # every step encodes its batch (3 images, batches of 2)
    original = UNet2DConditionModel.from_pretrained(base, subfolder="unet").state_dict()
    assert not torch.equal(plain["conv_in.weight"], original["conv_in.weight"])
    for flags in (["--center_crop"], ["--cache_latents"]):
        once, cached = train("cached", *flags)
        assert once == 3, flags  # the three instance images, once
        for k in plain:
            torch.testing.assert_close(cached[k], plain[k], rtol=1e-3, atol=1e-5)  # VAE batch size: last bits


def test_several_concepts_with_their_own_class_images(base, tmp_path):
    concepts = [
        {"instance_data_dir": str(write_images(tmp_path / f"subject{i}", 2, seed=i)),
         "instance_prompt": f"a sks font letter {c}", "class_data_dir": str(tmp_path / f"class{i}"),
         "class_prompt": f"a letter {c}"}
        for i, c in enumerate("ab")
    ]
    (tmp_path / "concepts.json").write_text(json.dumps(concepts))
    out = tmp_path / "out"
    dreambooth.main(common_args(base, out, "--concepts_list", str(tmp_path / "concepts.json"),
                                "--with_prior_preservation", "--num_class_images", "2", "--center_crop"))
    assert all(len(os.listdir(tmp_path / f"class{i}")) == 2 for i in range(2))
    card = (out / "README.md").read_text()
    assert "`a sks font letter a`" in card and "`a sks font letter b`" in card
