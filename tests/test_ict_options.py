"""iCT's improvements (Song & Dhariwal 2023) as options of the consistency objective, against their closed forms:
the pseudo-Huber distance, the discretised lognormal over grid levels, the doubling curriculum and λ = 1/Δσ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import erf

from diffusion_canon.schedulers.scheduling_karras import KarrasDiffusionScheduler
from diffusion_canon.training.consistency_schedules import consistency_schedule
from diffusion_canon.training.karras_losses import consistency_loss, distance, lognormal_index_probabilities
from test_karras_losses_parity import target_G
from test_karras_parity import model_F


def test_pseudo_huber_distance():
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, 8, 8, generator=generator), torch.randn(3, 3, 8, 8, generator=generator)
    c = 0.00054 * math.sqrt(3 * 8 * 8)
    squared = ((a.double() - b.double()) ** 2).flatten(1).sum(1).numpy()
    expected = np.sqrt(squared + c**2) - c
    # float32 against float64: a sum of 192 squares and a square root, a few float32 spacings (1.2e-7 each)
    np.testing.assert_allclose(distance(a, b, "pseudo-huber").numpy(), expected, rtol=1e-6)


def test_lognormal_index_probabilities():
    denoiser = KarrasDiffusionScheduler(boundary_condition=True)
    n = 11
    k = np.arange(n) / (n - 1)
    sigmas = (80 ** (1 / 7) + k * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    cdf = erf((np.log(sigmas) + 1.1) / (np.sqrt(2) * 2.0))
    expected = (cdf[:-1] - cdf[1:]) / (cdf[:-1] - cdf[1:]).sum()
    np.testing.assert_allclose(lognormal_index_probabilities(denoiser, n).numpy(), expected, rtol=1e-12)


def test_lognormal_indices_follow_the_probabilities():
    denoiser = KarrasDiffusionScheduler(boundary_condition=True)
    x = torch.zeros(20000, 1, 1, 1)
    terms = consistency_loss(lambda x, t: x, lambda x, t: x, denoiser, x, 11, index_distribution="lognormal",
                             generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(terms["indices"], minlength=10).double() / len(x)
    p = lognormal_index_probabilities(denoiser, 11)
    assert torch.all((counts - p).abs() <= 4 * (p * (1 - p) / len(x)).sqrt() + 1e-12)  # 4 binomial std


@pytest.mark.parametrize(("step", "expected"), [(0, 11), (99_999, 11), (100_000, 21), (350_000, 81),
                                                 (700_000, 1281), (799_999, 1281)])
def test_ict_curriculum(step, expected):
    """s₀ = 10, s₁ = 1280, K = 800000: K′ = ⌊800000 / (log₂ 128 + 1)⌋ = 100000 (the paper's settings)."""
    assert consistency_schedule(step, "fixed", 0.0, "ict", 10, 1280, 800_000, 1) == (0.0, expected)


def test_ict_weighting_is_one_over_the_step():
    denoiser = KarrasDiffusionScheduler(boundary_condition=True)
    x = torch.tanh(torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    run = lambda schedule: consistency_loss(model_F, target_G, denoiser, x, 10, weight_schedule=schedule,  # noqa: E731
                                            generator=torch.Generator().manual_seed(2))
    uniform, ict = run("uniform"), run("ict")
    sigma = denoiser.level(uniform["indices"] / 9)
    next_sigma = denoiser.level((uniform["indices"] + 1) / 9)
    # d·(1/Δσ) against d/Δσ: two float32 roundings apart
    torch.testing.assert_close(ict["loss"], uniform["loss"] / (sigma - next_sigma), rtol=1e-6, atol=0)
