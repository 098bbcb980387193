"""ADM U-Net and classifier: forward parity with guided-diffusion / improved-diffusion through our converter.

The reference numbers are in tests/fixtures/guided_diffusion/ (see tests/fixtures/README.md for how they were
recorded). The helpers here are shared with test_convert_adm.py and test_pipeline_adm.py.
"""

from __future__ import annotations

import gzip
import json
import math
from functools import cache
from pathlib import Path

import pytest
import torch
from parity import assert_parity
from safetensors.torch import load_file

from diffusion_canon.convert.adm import convert_classifier, convert_unet
from diffusion_canon.convert.adm_flags import classifier_config, model_flags, unet_config
from diffusion_canon.models import ADMClassifierModel, ADMUNet2DModel

FIXTURES = Path(__file__).parent / "fixtures" / "guided_diffusion"
REPO = {"guided": "guided-diffusion", "improved": "improved-diffusion"}


@cache
def reference_cases() -> dict[str, dict]:
    with gzip.open(FIXTURES / "cases.json.gz", "rt") as f:
        return {case["name"]: case for case in json.load(f)}


@cache
def reference_tensors() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "tensors.safetensors")


def regenerate(keys: list, seed: int) -> dict[str, torch.Tensor]:
    """The reference state dict the recording script loaded: one draw per tensor, in state_dict order, from
    torch.Generator(seed); ≥2-D tensors scaled by 1/√fan_in (×0.2 for the output layers "out.*"), 1-D weights
    1 + 0.1·N(0,1), biases 0.1·N(0,1)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for key, shape in keys:
        tensor = torch.randn(shape, generator=generator)
        if len(shape) >= 2:
            tensor = tensor / math.sqrt(math.prod(shape[1:]))
            if key.startswith("out."):
                tensor = 0.2 * tensor
        elif key.endswith("weight"):
            tensor = 1 + 0.1 * tensor
        else:
            tensor = 0.1 * tensor
        state_dict[key] = tensor
    return state_dict


def case_unet(case: dict) -> ADMUNet2DModel:
    """Our U-Net converted from the case's regenerated reference weights, via its flags (or constructor kwargs)."""
    reference = regenerate(case["keys"], case["seed"])
    if "unet_kwargs" in case:
        return convert_unet(reference, unet_config(case["unet_kwargs"]), legacy_qkv=True)
    parsed = model_flags(case["flags"], REPO[case["repo"]])
    return convert_unet(reference, unet_config(parsed.unet_kwargs, parsed.super_resolution), parsed.legacy_qkv)


def case_classifier(flags: str, keys: list, seed: int) -> ADMClassifierModel:
    return convert_classifier(regenerate(keys, seed), classifier_config(flags))


def case_inputs(case: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The recorded inputs: x = randn([2, 3, S, S]) then low_res = randn([2, 3, 32, 32]) from Generator(seed + 1000)."""
    generator = torch.Generator().manual_seed(case["seed"] + 1000)
    x = torch.randn(2, 3, case["size"], case["size"], generator=generator)
    low_res = torch.randn(2, 3, 32, 32, generator=generator) if "large_size" in case.get("flags", "") else None
    return x, low_res


UNET_CASES = [name for name, case in reference_cases().items() if case["kind"] == "unet"]
# float32 spacings of the largest value compared (tests/parity.py): twice the measured spread (U-Net 28, classifier 7.5)
FORWARD_ULPS = 56
CLASSIFIER_CASES = [name for name, case in reference_cases().items() if case["kind"] == "classifier"]


@pytest.mark.parametrize("name", UNET_CASES)
def test_unet_forward_matches_reference(name):
    case = reference_cases()[name]
    model = case_unet(case)
    x, low_res = case_inputs(case)
    timesteps = torch.tensor(case["t"])
    labels = None if case["y"] is None else torch.tensor(case["y"])
    with torch.no_grad():
        out = model(x, timesteps, class_labels=labels, low_res=low_res).sample
    stride = case["stride"]
    expected = reference_tensors()[f"{name}.out"]
    assert out[..., ::stride, ::stride].shape == expected.shape
    assert_parity(out[..., ::stride, ::stride], expected, FORWARD_ULPS, name)


@pytest.mark.parametrize("name", CLASSIFIER_CASES)
def test_classifier_forward_matches_reference(name):
    case = reference_cases()[name]
    model = case_classifier(case["flags"], case["keys"], case["seed"])
    assert model.config.pool == name.removeprefix("classifier_")
    x, _ = case_inputs(case)
    with torch.no_grad():
        logits = model(x, torch.tensor(case["t"])).logits
    expected = reference_tensors()[f"{name}.out"]
    assert_parity(logits, expected, FORWARD_ULPS, name)


def test_legacy_qkv_order_matters():
    """Converting a legacy-layout checkpoint as if it used the new layout must change the output (so the parity test
    above really checks the head layout)."""
    case = reference_cases()["guided_uncond_legacyqkv_heads"]
    reference = regenerate(case["keys"], case["seed"])
    parsed = model_flags(case["flags"], "guided-diffusion")
    assert parsed.legacy_qkv
    wrong = convert_unet(reference, unet_config(parsed.unet_kwargs), legacy_qkv=False)
    x, _ = case_inputs(case)
    with torch.no_grad():
        out = wrong(x, torch.tensor(case["t"])).sample
    assert (out - reference_tensors()[f"{case['name']}.out"]).abs().max() > 1e-3


def tiny_unet(**overrides) -> ADMUNet2DModel:
    config = dict(
        sample_size=16, model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample_factors=(2,),
        num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True, out_channels=6, num_classes=4,
    )
    config.update(overrides)
    torch.manual_seed(0)
    model = ADMUNet2DModel(**config)
    for parameter in model.parameters():  # leave the zero-initialised output layers non-zero
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny_unet()
    x = torch.randn(2, 3, 16, 16)
    labels = torch.tensor([0, 3])

    def grads():
        model.zero_grad()
        model(x, torch.tensor([5, 9]), labels).sample.square().mean().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_close_to_float32(dtype):
    model = tiny_unet()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        reference = model(x, 7, torch.tensor([1, 2])).sample
        half = model.to(dtype)(x, 7, torch.tensor([1, 2])).sample
    assert half.dtype == dtype
    assert (half.float() - reference).abs().max() < 0.1 * reference.abs().max()
    norm = model.down_blocks[0].resnet.norm1
    assert type(norm).__name__ == "GroupNorm32"  # statistics in float32, as the reference's GroupNorm32


def test_save_and_load_round_trip(tmp_path):
    model = tiny_unet(class_names=["a", "b", "c", "d"])
    model.save_pretrained(tmp_path)
    loaded = ADMUNet2DModel.from_pretrained(tmp_path)
    assert loaded.config.class_names == ["a", "b", "c", "d"]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, 3, torch.tensor([2])).sample, model(x, 3, torch.tensor([2])).sample)


def test_zero_initialised_like_the_reference():
    """Fresh models start as the reference does: every residual branch's last layer and the output conv are zero, so
    the untrained U-Net outputs exactly zero."""
    model = ADMUNet2DModel(sample_size=16, model_channels=32, channel_mult=(1, 2), attention_downsample_factors=(2,))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 16), 3).sample.abs().max() == 0


def test_bad_model_input_is_named():
    model = tiny_unet()
    with pytest.raises(ValueError, match="class_labels"):
        model(torch.randn(1, 3, 16, 16), 3)
    with pytest.raises(ValueError, match="timestep"):
        model(torch.randn(2, 3, 16, 16), torch.tensor([1, 2, 3]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="class_names"):
        ADMUNet2DModel(num_classes=3, class_names=["a"])
    with pytest.raises(ValueError, match="pool"):
        ADMClassifierModel(pool="max")
