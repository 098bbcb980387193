"""Where diffusers' DDPM / DDIM schedulers depart from improved-diffusion, measured against ours (which follows the
reference; see test_scheduler_parity.py). Each test asserts the departure, so it fails if diffusers changes; run
with ``-s`` to print the measured numbers quoted in the README."""

import math

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from diffusion_canon.schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler


def report(message: str) -> None:
    print(f"\n[departure] {message}")


def test_linear_betas_not_scaled_when_T_is_not_1000():
    for T in (100, 4000):
        theirs = DDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
        ours = ImprovedDDPMScheduler(num_train_timesteps=T, beta_schedule="linear")
        a_theirs, a_ours = theirs.alphas_cumprod[-1].item(), ours.alphas_cumprod[-1].item()
        report(f"T={T}: beta_T diffusers {theirs.betas[-1].item():.4g} vs ours {ours.betas[-1].item():.4g}; "
               f"alpha_bar_T diffusers {a_theirs:.3g} vs ours {a_ours:.3g}")
        assert abs(theirs.betas[-1].item() - 0.02) < 1e-7  # unscaled
        assert abs(ours.betas[-1].item() - 0.02 * 1000 / T) < 1e-7
    # T = 100: diffusers' x_T keeps √ᾱ_T ≈ 0.6 of the signal, so sampling from N(0, I) starts off-distribution
    assert DDPMScheduler(num_train_timesteps=100).alphas_cumprod[-1] > 0.3
    assert ImprovedDDPMScheduler(num_train_timesteps=100).alphas_cumprod[-1] < 1e-3


def test_ddim_N_when_T_is_not_a_multiple_of_N():
    theirs = DDIMScheduler(num_train_timesteps=1000)
    theirs.set_timesteps(30)
    ours = ImprovedDDIMScheduler(num_train_timesteps=1000)
    ours.set_timesteps(timestep_respacing="ddim30")
    ac = ours.alphas_cumprod
    t_theirs, t_ours = int(theirs.timesteps[0]), int(ours.timesteps[0])
    report(f"1000 steps, 30 DDIM steps: first timestep diffusers {t_theirs} (stride 1000//30=33, "
           f"sqrt(alpha_bar)={ac[t_theirs].sqrt():.4f}) vs reference 'ddim30' {t_ours} (stride 34, "
           f"sqrt(alpha_bar)={ac[t_ours].sqrt():.4f})")
    assert (t_theirs, t_ours) == (957, 986)
    assert len(theirs.timesteps) == len(ours.timesteps) == 30


def test_trailing_spacing_adds_noise_at_the_last_step():
    theirs = DDPMScheduler(num_train_timesteps=1000, variance_type="fixed_large", timestep_spacing="trailing")
    theirs.set_timesteps(50)
    ours = ImprovedDDPMScheduler(num_train_timesteps=1000, variance_type="fixed_large")
    ours.set_timesteps(50)
    x, eps = torch.zeros(4, 3, 16, 16), torch.zeros(4, 3, 16, 16)
    last_theirs, last_ours = int(theirs.timesteps[-1]), int(ours.timesteps[-1])
    noisy = theirs.step(eps, last_theirs, x, generator=torch.Generator().manual_seed(0)).prev_sample
    clean = ours.step(eps, last_ours, x, generator=torch.Generator().manual_seed(0)).prev_sample
    report(f"trailing, 50 steps: diffusers' last timestep is {last_theirs}, its step adds noise of std "
           f"{noisy.std():.4f} to the final image; ours ends at t={last_ours} and adds {clean.std():.1f}")
    assert last_theirs == 19 and last_ours == 0
    assert noisy.std() > 0.05 and clean.abs().max() == 0


def test_learned_variance_gives_nan():
    theirs = DDPMScheduler(num_train_timesteps=1000, variance_type="learned")
    ours = ImprovedDDPMScheduler(num_train_timesteps=1000, variance_type="learned")
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    log_variance = torch.full_like(x, math.log(1e-3))  # a network's log σ² (the reference's "learned" output)
    output = torch.cat([torch.zeros_like(x), log_variance], dim=1)
    a = theirs.step(output, 500, x, generator=torch.Generator().manual_seed(0)).prev_sample
    b = ours.step(output, 500, x, generator=torch.Generator().manual_seed(0)).prev_sample
    report(f"variance_type='learned' (log sigma^2 = log 1e-3): diffusers NaN fraction {a.isnan().float().mean():.2f} "
           f"(it takes (log sigma^2)**0.5); ours NaN fraction {b.isnan().float().mean():.2f}")
    assert a.isnan().all() and torch.isfinite(b).all()
