"""A VP model (DDPM / improved-DDPM, ours: the ADM folders) as a Karras denoiser on σ = √((1 − ᾱ)/ᾱ): at every
training timestep D(x_σ; σ) is the x̂_0 the improved-diffusion scheduler computes from the same network at
x_t = √ᾱ·x_σ (itself parity-tested against the reference); t(σ) recovers the training timesteps."""

from __future__ import annotations

import math

import pytest
import torch

from diffusion_canon.models import ADMUNet2DModel
from diffusion_canon.schedulers import ImprovedDDPMScheduler, KarrasEulerScheduler
from diffusion_canon.schedulers.scheduling_karras import vp_config


def network_and_schedulers(prediction_type: str):
    torch.manual_seed(0)
    unet = ADMUNet2DModel(sample_size=8, out_channels=6, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                          attention_downsample_factors=()).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ddpm = ImprovedDDPMScheduler(beta_schedule="cosine", variance_type="learned_range", prediction_type=prediction_type)
    return unet, ddpm, KarrasEulerScheduler(**vp_config(ddpm))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@torch.no_grad()
def test_vp_denoiser_is_the_schedulers_x0(prediction_type):
    unet, ddpm, karras = network_and_schedulers(prediction_type)
    network = lambda x, t: unet(x, t).sample  # noqa: E731
    generator = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(2, 3, 8, 8, generator=generator) * 2 - 1, torch.randn(2, 3, 8, 8, generator=generator)
    for t in (0, 10, 500, 990, 999):
        alpha_bar = float(ddpm.alphas_cumprod[t].double())
        sigma = math.sqrt((1 - alpha_bar) / alpha_bar)
        x_sigma = x0 + sigma * eps
        assert abs(float(karras.model_timestep(torch.tensor([sigma]))[0]) - t) < 1e-3
        ours = karras.denoise(network, x_sigma, torch.full((2,), sigma))
        x_t = x_sigma * math.sqrt(alpha_bar)
        reference = ddpm.train_p_mean_variance(unet(x_t, torch.tensor([t, t])).sample, x_t, torch.tensor([t, t]))
        expected = reference.pred_original_sample
        # the two routes feed the network √ᾱ·x_σ computed two ways, and x̂_0 multiplies its rounding by σ (up to 160):
        # in float32 spacings of max(σ, 1)·(|x_σ| + 1), measured at most 11.7 (t = 0); the bound is twice that
        scale = max(sigma, 1.0) * float(x_sigma.abs().max() + 1)
        torch.testing.assert_close(ours, expected, rtol=0, atol=24 * torch.finfo(torch.float32).eps * scale)


def test_vp_teachers_sigma_range_and_bad_configs():
    _, ddpm, karras = network_and_schedulers("epsilon")
    alpha = ddpm.alphas_cumprod.double()
    assert karras.config.sigma_min == pytest.approx(float(((1 - alpha[0]) / alpha[0]) ** 0.5))
    assert karras.config.sigma_max == pytest.approx(float(((1 - alpha[-1]) / alpha[-1]) ** 0.5))
    with pytest.raises(ValueError, match="prediction_type"):
        vp_config(ImprovedDDPMScheduler(prediction_type="sample"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@torch.no_grad()
def test_vp_consistency_model_is_the_boundary_mix_of_the_vp_denoiser(prediction_type):
    """f(x; σ) = b(σ)·x + (1 − b(σ))·D_VP(x; σ), b = σ_d²/((σ − σ_min)² + σ_d²): exactly x at σ_min. The two sides
    round differently (one product against two): float32 spacing of values up to ~80·|F| + |x|, 1e-5 covers it."""
    unet, ddpm, vp = network_and_schedulers(prediction_type)
    network = lambda x, t: unet(x, t).sample  # noqa: E731
    consistency = KarrasEulerScheduler(**{**vp_config(ddpm), "boundary_condition": True})
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    sigma_min = consistency.config.sigma_min
    for sigma in (sigma_min, 0.3, 2.0, 80.0):
        sigmas = torch.full((3,), sigma)
        d_vp = vp.denoise(network, x, sigmas)
        b = 0.25 / ((sigma - sigma_min) ** 2 + 0.25)
        torch.testing.assert_close(consistency.denoise(network, x, sigmas), b * x + (1 - b) * d_vp,
                                   rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(consistency.denoise(network, x, torch.full((3,), sigma_min)), x, rtol=0, atol=0)
