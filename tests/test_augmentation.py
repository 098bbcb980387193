"""Conditioning augmentation (Ho et al. 2021 §4): noise through q(z_s | z_0), Gaussian blur, probabilities, and the
truncated / non-truncated sampling semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from diffusion_canon.pipelines.sampling import denoise
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.augmentation import (
    ConditioningAugmentation,
    gaussian_blur,
    gaussian_kernel,
    noise_conditioning,
    truncated_timesteps,
)

T = 1000


def cosine_alpha_bar(t: int, num_timesteps: int = T) -> float:
    """ᾱ_t of Nichol & Dhariwal eq. 17 as the product of the clipped β_i (computed here independently)."""
    f = lambda u: math.cos((u / num_timesteps + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return math.prod(1 - min(1 - f(i + 1) / f(i), 0.999) for i in range(t + 1))


@pytest.mark.parametrize("level", [0, 120, 600])
def test_noise_has_the_forward_process_moments(level):
    scheduler = ImprovedDDPMScheduler(beta_schedule="cosine")
    z0 = torch.linspace(-1, 1, 8).reshape(1, 2, 2, 2).expand(20000, -1, -1, -1)
    z = noise_conditioning(z0, level, scheduler, torch.Generator().manual_seed(0))
    alpha_bar = cosine_alpha_bar(level)
    mean_error = (z.mean(0) - math.sqrt(alpha_bar) * z0[0]).abs().max()
    assert mean_error < 4 * math.sqrt((1 - alpha_bar) / 20000) + 1e-6
    assert z.var(0).sub(1 - alpha_bar).abs().max() < 0.05 * (1 - alpha_bar) + 1e-7


@pytest.mark.parametrize("level", [-1, T, 2.5, torch.tensor([3, T])])
def test_noise_level_outside_the_schedule_is_rejected(level):
    with pytest.raises(ValueError, match="noise_level"):
        noise_conditioning(torch.zeros(2, 3, 4, 4), level, ImprovedDDPMScheduler())


def test_gaussian_kernel_is_normalised_and_gaussian():
    kernel = gaussian_kernel(torch.tensor([0.4, 0.6, 2.0]), 5)
    torch.testing.assert_close(kernel.sum(1), torch.ones(3))
    x = torch.arange(-2.0, 3.0)
    expected = torch.exp(-(x**2) / (2 * 0.6**2))
    torch.testing.assert_close(kernel[1], expected / expected.sum())
    for bad in ({"sigma": 0.5, "kernel_size": 4}, {"sigma": 0.0, "kernel_size": 3}):
        with pytest.raises(ValueError):
            gaussian_kernel(**bad)


def test_blur_matches_scipy_per_image_sigma():
    images = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.4, 1.3])
    blurred = gaussian_blur(images, sigmas, kernel_size=5)
    for i, sigma in enumerate(sigmas.tolist()):
        # radius int(truncate·σ + 0.5) = 2, i.e. a 5-tap kernel; "mirror" is torch's "reflect"
        expected = ndimage.gaussian_filter(images[i].numpy(), sigma=(0, sigma, sigma), mode="mirror", truncate=2 / sigma)
        np.testing.assert_allclose(blurred[i].numpy(), expected, atol=1e-5)
    constant = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(gaussian_blur(constant, 0.5), constant)


def test_probabilities_and_levels_are_respected():
    scheduler = ImprovedDDPMScheduler()
    augment = ConditioningAugmentation(noise_probability=0.3, max_noise_level=200, blur_probability=0.6)
    z0 = torch.rand(4000, 3, 4, 4) * 2 - 1
    z, levels = augment(z0, scheduler, torch.Generator().manual_seed(1))
    changed = (z - z0).abs().flatten(1).amax(1) > 0
    visibly_noised = (z - gaussian_blur(z0, 0.5)).abs().flatten(1).amax(1) > 0.05  # beyond any blur in [0.4, 0.6]
    n = len(z0)
    # fraction changed by anything: 1 − (1 − 0.3)(1 − 0.6) = 0.72; binomial standard error ~ 0.007
    assert abs(changed.float().mean() - 0.72) < 4 * math.sqrt(0.72 * 0.28 / n)
    assert abs((levels > 0).float().mean() - 0.3 * 199 / 200) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert int(levels.max()) < 200 and visibly_noised[levels > 50].all()
    # levels uniform on {0 … 199}: mean 99.5 among the noised examples
    assert abs(levels[levels > 0].float().mean() - 100) < 6


def test_no_augmentation_is_identity():
    z0 = torch.rand(5, 3, 4, 4)
    z, levels = ConditioningAugmentation()(z0, ImprovedDDPMScheduler())
    assert torch.equal(z, z0) and torch.equal(levels, torch.zeros(5, dtype=torch.long))


def test_bad_augmentation_settings():
    for kwargs in ({"noise_probability": 1.5}, {"blur_probability": -0.1}, {"max_noise_level": 0},
                   {"blur_sigma": (0.6, 0.4)}, {"blur_kernel_size": 2}):
        with pytest.raises(ValueError):
            ConditioningAugmentation(**kwargs)
    with pytest.raises(ValueError, match="max_noise_level"):
        ConditioningAugmentation(noise_probability=0.5, max_noise_level=2000)(torch.zeros(1, 3, 2, 2), ImprovedDDPMScheduler())


def test_truncated_timesteps_end_at_the_level():
    full = [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert truncated_timesteps(full, 300) == [999, 888, 777, 666, 555, 444, 333, 300]
    assert truncated_timesteps(full, 333) == [999, 888, 777, 666, 555, 444, 333]
    assert truncated_timesteps(full, 999) == [999]


def exact_denoiser(x0: torch.Tensor, scheduler: ImprovedDDPMScheduler):
    """ε predicted exactly for data that is the single point x0: ε = (x_t − √ᾱ_t x0)/√(1 − ᾱ_t)."""
    alphas = scheduler.alphas_cumprod

    def predict(x_t, model_timestep):
        a = alphas[model_timestep.long()].view(-1, 1, 1, 1)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return predict


@pytest.mark.parametrize("level", [150, 420])
def test_truncated_reverse_process_stops_at_the_marginal_of_level_s(level):
    """With the exact denoiser every posterior step is exact, so the truncated chain ends with z_s ~ q(z_s | x0):
    mean √ᾱ_s x0, variance 1 − ᾱ_s (closed form); the full chain ends at x0 itself."""
    scheduler = ImprovedDDPMScheduler(beta_schedule="cosine")
    x0 = torch.tensor([0.5, -0.25, 0.75, 0.0]).reshape(1, 1, 2, 2)
    predict = exact_denoiser(x0, scheduler)
    pipe = type("P", (), {"progress_bar": staticmethod(lambda it: it), "interrupt": False})()
    generator = torch.Generator().manual_seed(0)
    scheduler.set_timesteps(10)
    scheduler.set_timesteps(timesteps=truncated_timesteps(scheduler.timesteps, level))
    z = denoise(pipe, scheduler, predict, torch.randn(20000, 1, 2, 2, generator=generator), generator=generator,
              stop_at=level)
    alpha_bar = cosine_alpha_bar(level)
    assert (z.mean(0) - math.sqrt(alpha_bar) * x0[0]).abs().max() < 0.03
    assert (z.var(0) - (1 - alpha_bar)).abs().max() < 0.05 * (1 - alpha_bar)
    scheduler.set_timesteps(10)
    full = denoise(pipe, scheduler, predict, torch.randn(8, 1, 2, 2, generator=generator), generator=generator)
    torch.testing.assert_close(full, x0.expand(8, -1, -1, -1), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="stop_at"):
        denoise(pipe, scheduler, predict, torch.randn(1, 1, 2, 2), stop_at=level)
