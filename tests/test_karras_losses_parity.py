"""The EDM / consistency / progressive-distillation losses against openai/consistency_models' ``training_losses``,
``consistency_losses`` and ``progdist_losses`` given the same inputs (tests/fixtures/README.md, consistency_models/):
the recording called them right after ``torch.manual_seed(seed)``; ours draw the same numbers from one
``torch.Generator`` seeded alike."""

from __future__ import annotations

import pytest
import torch

from diffusion_canon.schedulers.scheduling_karras import KarrasDiffusionScheduler
from diffusion_canon.training.karras_losses import consistency_loss, edm_loss, progressive_distillation_loss
from parity import assert_parity
from test_karras_parity import CASES, TENSORS, model_F

LOSSES = CASES["losses"]
# float32 spacings of the largest reference value (tests/parity.py): the same operations in the same order as the
# reference, so 0 on the AVX2 / AVX-512 paths; on torch's no-vector path tanh/sin/cos round differently and
# progressive distillation's target divides by σ_{n+1} − σ_n: measured up to 26; the bound is twice that.
LOSS_ULPS = 52


def target_G(x, t):
    t = t.reshape(-1, 1, 1, 1)
    return 0.8 * torch.tanh(0.7 * x - t / 1000) + 0.15 * torch.cos(2 * x + t / 800)


def teacher_H(x, t):
    t = t.reshape(-1, 1, 1, 1)
    return 0.95 * torch.tanh(0.6 * x + t / 2000) - 0.05 * x * torch.cos(t / 700)


def denoiser_for(spec: dict) -> KarrasDiffusionScheduler:
    return KarrasDiffusionScheduler(boundary_condition=spec["distillation"], clip_denoised=False)


@pytest.mark.parametrize("name", [n for n in LOSSES if n.startswith("edm/")])
def test_edm_loss(name):
    case = LOSSES[name]
    terms = edm_loss(model_F, denoiser_for(case["diffusion"]), TENSORS["losses/x_start"], TENSORS["losses/edm/sigmas"],
                     case["diffusion"]["weight_schedule"], generator=torch.Generator().manual_seed(case["seed"]))
    for key in ("loss", "mse", "xs_mse"):
        assert_parity(terms[key], TENSORS[f"losses/{name}/{key}"], LOSS_ULPS, f"{name} {key}")


@pytest.mark.parametrize("name", [n for n in LOSSES if n.startswith(("cd/", "ct/"))])
def test_consistency_loss(name):
    case = LOSSES[name]
    spec = case["diffusion"]
    teacher = None if case["teacher_model"] is None else (teacher_H, denoiser_for(case["teacher_diffusion"]))
    terms = consistency_loss(model_F, target_G, denoiser_for(spec), TENSORS["losses/x_start"], case["num_scales"],
                             teacher, spec["weight_schedule"], spec["loss_norm"],
                             generator=torch.Generator().manual_seed(case["seed"]))
    assert torch.equal(terms["indices"], TENSORS[f"losses/{name}/indices"].to(terms["indices"].dtype))
    assert_parity(terms["loss"], TENSORS[f"losses/{name}/loss"], LOSS_ULPS, name)


@pytest.mark.parametrize("name", [n for n in LOSSES if n.startswith("progdist/")])
def test_progressive_distillation_loss(name):
    case = LOSSES[name]
    spec = case["diffusion"]
    terms = progressive_distillation_loss(model_F, denoiser_for(spec), teacher_H, denoiser_for(case["teacher_diffusion"]),
                                          TENSORS["losses/x_start"], case["num_scales"], spec["weight_schedule"],
                                          spec["loss_norm"], generator=torch.Generator().manual_seed(case["seed"]))
    assert torch.equal(terms["indices"], TENSORS[f"losses/{name}/indices"].to(terms["indices"].dtype))
    assert_parity(terms["loss"], TENSORS[f"losses/{name}/loss"], LOSS_ULPS, name)


def test_bad_losses_are_named():
    denoiser = KarrasDiffusionScheduler(boundary_condition=True)
    x = TENSORS["losses/x_start"]
    with pytest.raises(ValueError, match="loss_norm"):
        consistency_loss(model_F, target_G, denoiser, x, 10, loss_norm="lpips")
    with pytest.raises(ValueError, match="weight_schedule"):
        consistency_loss(model_F, target_G, denoiser, x, 10, weight_schedule="cosine")
    with pytest.raises(ValueError, match="num_scales"):
        consistency_loss(model_F, target_G, denoiser, x, 1)
