"""Diffusion training losses and likelihood evaluation (Ho et al. 2020 §3; Nichol & Dhariwal 2021 §3).

Everything works on the scheduler's *training* schedule (``scheduler.train_schedule``), whatever
``set_timesteps`` was last called with, and reproduces improved-diffusion's ``training_losses`` /
``calc_bpd_loop`` numerically. KL and likelihood terms are in bits per dimension.

Typical training step::

    timesteps, weights = sampler.sample(batch_size, device)
    noise = torch.randn_like(x_start)
    x_t = scheduler.add_noise(x_start, noise, timesteps)
    terms = training_losses(scheduler, unet(x_t, scheduler.model_timestep(timesteps)).sample,
                            x_start, x_t, noise, timesteps, loss_type="rescaled_mse")
    loss = (terms["loss"] * weights).mean()
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..schedulers.gaussian_diffusion import GaussianDiffusionSchedule, check_choice, split_model_output
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler

LOSS_TYPES = ("mse", "rescaled_mse", "kl", "rescaled_kl")
_LN2 = math.log(2.0)


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all non-batch dimensions: ``(B, …) → (B,)``."""
    return x.mean(dim=tuple(range(1, x.ndim)))


def normal_kl(
    mean1: torch.Tensor | float, logvar1: torch.Tensor | float, mean2: torch.Tensor | float, logvar2: torch.Tensor | float
) -> torch.Tensor:
    """KL(N(μ₁, e^{ℓ₁}) ‖ N(μ₂, e^{ℓ₂})) = ½(−1 + ℓ₂ − ℓ₁ + e^{ℓ₁−ℓ₂} + (μ₁ − μ₂)² e^{−ℓ₂}), elementwise in nats
    (the L_{t−1} terms of Ho Eq. 5). Arguments broadcast; at least one must be a tensor."""
    like = next((x for x in (mean1, logvar1, mean2, logvar2) if isinstance(x, torch.Tensor)), None)
    if like is None:
        raise TypeError("normal_kl needs at least one tensor argument")
    logvar1, logvar2 = (
        x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=like.dtype, device=like.device)
        for x in (logvar1, logvar2)
    )
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715 x³))), the approximation Ho et al.'s code uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor
) -> torch.Tensor:
    """log p(x) for 8-bit data rescaled to [−1, 1] under N(means, e^{2·log_scales}) integrated over each pixel's bin
    of width 2/255, with the two edge bins extended to ±∞ (Ho Eq. 13, the decoder L_0). Elementwise, nats."""
    if not x.shape == means.shape == log_scales.shape:
        raise ValueError(f"x, means, log_scales must share a shape; got {x.shape}, {means.shape}, {log_scales.shape}")
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def vb_terms_bpd(
    scheduler: ImprovedDiffusionScheduler,
    model_output: torch.Tensor,
    x_start: torch.Tensor,
    x_t: torch.Tensor,
    timesteps: torch.Tensor,
    clip_denoised: bool = False,
) -> dict[str, torch.Tensor]:
    """One term of the variational bound, in bits/dim, per sample (Ho Eq. 5; ND §3.1):
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) for t > 0 and the decoder NLL −log p_θ(x_0 | x_1) at t = 0.

    Args: ``model_output`` ``(B, C or 2C, …)``; ``x_start``, ``x_t`` ``(B, C, …)``; ``timesteps`` ``(B,)`` training
    timesteps; ``clip_denoised`` applies the scheduler's clipping / thresholding to x̂_0.
    Returns ``{"output": (B,), "pred_original_sample": (B, C, …)}``."""
    schedule = scheduler.train_schedule
    index = scheduler.training_index(timesteps, x_start)
    true_mean, _, true_log_variance = schedule.q_posterior_mean_variance(x_start, x_t, index)
    dist = scheduler.train_p_mean_variance(model_output, x_t, index, clip=clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, dist.mean, dist.log_variance)) / _LN2
    decoder_nll = -mean_flat(
        discretized_gaussian_log_likelihood(x_start, means=dist.mean, log_scales=0.5 * dist.log_variance)
    ) / _LN2
    return {"output": torch.where(index == 0, decoder_nll, kl), "pred_original_sample": dist.pred_original_sample}


def _target(prediction_type: str, schedule: GaussianDiffusionSchedule, x_start, noise, index) -> torch.Tensor:
    targets = {
        "epsilon": lambda: noise,
        "sample": lambda: x_start,
        "v_prediction": lambda: schedule.velocity(x_start, index, noise),
    }
    return targets[prediction_type]()


def training_losses(
    scheduler: ImprovedDiffusionScheduler,
    model_output: torch.Tensor,
    x_start: torch.Tensor,
    x_t: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    loss_type: str = "mse",
) -> dict[str, torch.Tensor]:
    """Per-sample training loss terms, equal to improved-diffusion's ``GaussianDiffusion.training_losses``.

    - "mse": L_simple = ‖target − output‖² (Ho Eq. 14, target ε, x_0 or v per ``prediction_type``), plus, when the
      variance is learned, the VLB term L_vlb with a stop-gradient on the mean so it trains Σ only (ND §3.1);
    - "rescaled_mse": the hybrid loss L_simple + λ L_vlb with λ = 0.001 (ND Eq. 16); as L_vlb = T · E_t[L_t], the
      per-sample VLB term is scaled by T/1000;
    - "kl": the VLB term alone (ND's L_vlb, one uniformly sampled term); "rescaled_kl": the same × T, an estimate of
      the full bound.

    Args:
        model_output: ``(B, C, …)`` or ``(B, 2C, …)`` (learned variances) network output at ``(x_t, timesteps)``.
        x_start, x_t, noise: ``(B, C, …)`` with ``x_t = scheduler.add_noise(x_start, noise, timesteps)``.
        timesteps: ``(B,)`` training timesteps.
    Returns:
        ``{"loss", "mse", "vb"}``, each ``(B,)``. ``loss`` is what to minimise; ``mse`` (for the KL types) and
        ``vb`` (for fixed variances with the MSE types) are detached diagnostics not included in it.
    """
    check_choice("loss_type", loss_type, LOSS_TYPES)
    config = scheduler.config
    index = scheduler.training_index(timesteps, x_start)
    mean_output, var_values = split_model_output(model_output, x_t, config.variance_type)
    target = _target(config.prediction_type, scheduler.train_schedule, x_start, noise, index)
    if target.shape != mean_output.shape:
        raise ValueError(f"x_start/noise shape {tuple(target.shape)} does not match model output {tuple(mean_output.shape)}")
    mse = mean_flat((target - mean_output) ** 2)
    if loss_type in ("kl", "rescaled_kl"):
        vb = vb_terms_bpd(scheduler, model_output, x_start, x_t, index)["output"]
        if loss_type == "rescaled_kl":
            vb = vb * config.num_train_timesteps
        return {"loss": vb, "mse": mse.detach(), "vb": vb}
    if var_values is None:
        vb = vb_terms_bpd(scheduler, model_output.detach(), x_start, x_t, index)["output"]
        return {"loss": mse, "mse": mse, "vb": vb}
    frozen = torch.cat([mean_output.detach(), var_values], dim=1)  # the VLB must not move the mean (ND §3.1)
    vb = vb_terms_bpd(scheduler, frozen, x_start, x_t, index)["output"]
    if loss_type == "rescaled_mse":
        vb = vb * (config.num_train_timesteps / 1000.0)
    return {"loss": mse + vb, "mse": mse, "vb": vb}


def prior_bpd(scheduler: ImprovedDiffusionScheduler, x_start: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim, ``(B,)`` (Ho Eq. 5); constant in θ."""
    index = torch.full((x_start.shape[0],), scheduler.config.num_train_timesteps - 1, device=x_start.device)
    mean, _, log_variance = scheduler.train_schedule.q_mean_variance(x_start, index)
    return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0)) / _LN2


@torch.no_grad()
def nll_bits_per_dim(
    model_fn: Callable[..., torch.Tensor],
    scheduler: ImprovedDiffusionScheduler,
    x_start: torch.Tensor,
    clip_denoised: bool = True,
    generator: torch.Generator | None = None,
    model_kwargs: dict | None = None,
) -> dict[str, torch.Tensor]:
    """The whole variational bound −log p(x_0) ≤ L_T + ∑ L_{t−1} + L_0 in bits/dim (Ho Eq. 5; ND Table 2's NLL),
    as improved-diffusion's ``calc_bpd_loop``: every training timestep, from T−1 down to 0, with fresh noise.

    Args:
        model_fn: ``model_fn(x_t, scheduler.model_timestep(t), **model_kwargs) -> (B, C or 2C, …)`` tensor.
        x_start: ``(B, C, …)`` 8-bit data scaled to [−1, 1].
        generator: one ``randn(x_start.shape)`` is drawn from it per timestep, in that order.
    Returns:
        ``total_bpd`` and ``prior_bpd`` ``(B,)``; ``vb``, ``xstart_mse``, ``mse`` ``(B, T)`` with column 0 = t = T−1.
    """
    model_kwargs = model_kwargs or {}
    schedule = scheduler.train_schedule
    batch = x_start.shape[0]
    vb, xstart_mse, eps_mse = [], [], []
    for t in reversed(range(scheduler.config.num_train_timesteps)):
        index = torch.full((batch,), t, device=x_start.device, dtype=torch.long)
        noise = torch.randn(x_start.shape, generator=generator, dtype=x_start.dtype, device=x_start.device)
        x_t = schedule.q_sample(x_start, index, noise)
        output = model_fn(x_t, scheduler.model_timestep(index), **model_kwargs)
        terms = vb_terms_bpd(scheduler, output, x_start, x_t, index, clip_denoised=clip_denoised)
        pred_start = terms["pred_original_sample"]
        vb.append(terms["output"])
        xstart_mse.append(mean_flat((pred_start - x_start) ** 2))
        eps_mse.append(mean_flat((schedule.predict_noise_from_start(x_t, index, pred_start) - noise) ** 2))
    vb_t = torch.stack(vb, dim=1)
    prior = prior_bpd(scheduler, x_start)
    return {
        "total_bpd": vb_t.sum(dim=1) + prior,
        "prior_bpd": prior,
        "vb": vb_t,
        "xstart_mse": torch.stack(xstart_mse, dim=1),
        "mse": torch.stack(eps_mse, dim=1),
    }
