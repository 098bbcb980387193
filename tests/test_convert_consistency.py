"""The consistency-models converter against the reference's own U-Net (tests/fixtures/README.md,
consistency_models/unet_*): every published checkpoint's layout, forward passes with the reference's float16
attention and without it, denoise, and karras_sample through EDMPipeline; the CLI writes a folder that loads both
ways; bad flags and mismatched checkpoints are named."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

from diffusion_canon.convert.adm_state_dict import reference_layout, unet_rules
from diffusion_canon.convert.consistency_models import (
    as_guided_diffusion_state_dict, consistency_flags, convert_consistency_unet, edm_pipeline,
)
from diffusion_canon.convert.consistency_presets import PRESETS
from diffusion_canon.models import ADMUNet2DModel
from diffusion_canon.convert.adm_flags import unet_config
from diffusion_canon.models.reference_fp16_attention import use_reference_fp16_attention
from parity import assert_parity
from test_adm_models import FORWARD_ULPS, regenerate

FIXTURES = Path(__file__).parent / "fixtures" / "consistency_models"
with gzip.open(FIXTURES / "unet_cases.json.gz", "rt") as f:
    RECORDED = json.load(f)
TENSORS = load_file(FIXTURES / "unet_tensors.safetensors")
CASES = {case["name"]: case for case in RECORDED["cases"]}
# The reference's float16 attention against ours: both round q, k, v and the softmax to float16 from the same
# float32 convolution, so on the kernel path the fixtures were recorded with (AVX-512, 2 threads) every output and
# sample is bit-identical. On another path (no-vector, AVX2, or 1 thread) the float32 inputs move by an ulp and a
# float16 rounding flips: measured up to 3787 spacings of the largest value (2.3e-4 on a sample in [−1, 1]), about
# the float16-vs-float32 gap itself; the bound is twice that. The float32 path is held to the ADM bounds.
FP16_MEASURED = 3787
FP16_ULPS = 2 * FP16_MEASURED


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_matches_the_reference_layout(name):
    recorded = RECORDED["presets"][name]
    parsed = consistency_flags(PRESETS[name])
    with init_empty_weights():
        unet = ADMUNet2DModel(**unet_config(parsed.unet_kwargs))
    layout = reference_layout(unet_rules(unet, legacy_qkv=False))
    squeezed = {key: tuple(shape[:-1]) if key.endswith((".qkv.weight", ".proj_out.weight")) and len(shape) == 4
                else tuple(shape) for key, shape in recorded["keys"]}
    assert layout == squeezed
    assert sum(p.numel() for p in unet.parameters()) == recorded["parameters"]
    assert parsed.distillation == recorded["diffusion"]["distillation"]


def converted(case: dict, fp16_attention: bool) -> ADMUNet2DModel:
    unet = convert_consistency_unet(regenerate(case["keys"], case["seed"]), consistency_flags(case["flags"]))
    return use_reference_fp16_attention(unet) if fp16_attention else unet


@pytest.mark.parametrize("fp16_attention", [False, True], ids=["fp32-attention", "reference-fp16-attention"])
@pytest.mark.parametrize("name", sorted(CASES))
@torch.no_grad()
def test_forward_matches_the_reference(name, fp16_attention):
    case = CASES[name]
    unet = converted(case, fp16_attention)
    x = torch.randn(2, 3, case["size"], case["size"], generator=torch.Generator().manual_seed(case["seed"] + 1000))
    labels = None if case["y"] is None else torch.tensor(case["y"])
    out = unet(x, torch.tensor(case["t"]), labels).sample
    expected = TENSORS[f"{name}.out" if fp16_attention else f"{name}.out_fp32"]
    assert_parity(out, expected, FP16_ULPS if fp16_attention else FORWARD_ULPS, name)


@pytest.mark.parametrize("fp16_attention", [False, True], ids=["fp32-attention", "reference-fp16-attention"])
@pytest.mark.parametrize("sampler", ["heun", "multistep"])
def test_karras_sample_through_the_pipeline(sampler, fp16_attention):
    spec = RECORDED["sampling"][sampler]
    case = CASES[spec["case"]]
    kwargs = spec["karras_sample_kwargs"]
    flags = f"{case['flags']} --sampler {sampler} --steps {kwargs['steps']}"
    if sampler == "multistep":
        flags += " --training_mode consistency_distillation --ts " + ",".join(map(str, kwargs["ts"]))
    parsed = consistency_flags(flags)
    pipe = edm_pipeline(convert_consistency_unet(regenerate(case["keys"], case["seed"]), parsed), parsed,
                        reference_fp16_attention=fp16_attention)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(class_labels=spec["y"], output_type="latent",
                  generator=torch.Generator().manual_seed(spec["noise_seed"])).images
    expected = TENSORS[f"sample.{sampler}.final" if fp16_attention else f"sample.{sampler}.final_fp32"]
    # a sampling run carries the forward's rounding through every evaluation: SAMPLING_ULPS of tests/parity.py's
    # ADM family for float32, the float16 bound for the reference's attention
    assert_parity(images, expected, FP16_ULPS if fp16_attention else 500, f"{sampler} sample")


def test_cli_writes_a_folder_that_loads_both_ways(tmp_path):
    case = CASES["cm_cond_heads2_16px"]
    checkpoint = tmp_path / "model.pt"
    torch.save(regenerate(case["keys"], case["seed"]), checkpoint)
    flags = f"{case['flags']} --training_mode consistency_distillation --sampler multistep --ts 0,2,3 --steps 4"
    run = subprocess.run([sys.executable, "-m", "diffusion_canon.cli", "convert", "consistency-models", "--checkpoint",
                          str(checkpoint), "--flags", flags, "--output", str(tmp_path / "folder")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    for pipe in (DiffusionPipeline.from_pretrained(tmp_path / "folder", trust_remote_code=True),):
        assert type(pipe).__name__ == "EDMPipeline" and pipe.config.default_timesteps == "0,2,3"
        assert pipe.config.reference_fp16_attention and pipe.scheduler.config.boundary_condition
        pipe.set_progress_bar_config(disable=True)
        images = pipe(class_labels=[0, 5], output_type="np").images
        assert images.shape == (2, 16, 16, 3) and pipe.num_timesteps == 2  # the recorded --ts
    card = (tmp_path / "folder" / "README.md").read_text()
    assert "consistency_distillation" in card and "--ts 0,2,3" in card and "class_labels=[207, 360]" in card


@pytest.mark.parametrize(("flags", "message"), [
    ("--training_mode ddpm", "training_mode"),
    ("--sampler ancestral", "sampler"),
    ("--sampler multistep", "--ts"),
    ("--sampler multistep --ts 0,20,40 --steps 40", "--ts"),
    ("--num_layers 3", "unknown flag"),
])
def test_bad_flags_are_named(flags, message):
    with pytest.raises(ValueError, match=message):
        consistency_flags(flags)


def test_checkpoint_that_does_not_fit_the_flags_is_named():
    case = CASES["cm_cond_heads2_16px"]
    wrong = consistency_flags(case["flags"].replace("--num_channels 64", "--num_channels 32"))
    with pytest.raises(ValueError, match="shape"):
        convert_consistency_unet(regenerate(case["keys"], case["seed"]), wrong)


def test_attention_weights_are_squeezed_only_where_2d():
    reference = {"a.qkv.weight": torch.zeros(6, 2, 1, 1), "a.proj_out.weight": torch.zeros(2, 2, 1, 1),
                 "b.weight": torch.zeros(2, 2, 1, 1)}
    shapes = {k: tuple(v.shape) for k, v in as_guided_diffusion_state_dict(reference).items()}
    assert shapes == {"a.qkv.weight": (6, 2, 1), "a.proj_out.weight": (2, 2, 1), "b.weight": (2, 2, 1, 1)}
