"""The latent-diffusion training objective shared by DreamBooth, LoRA and textual inversion.

    z_0 = s * E(x),  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,
    L = E_{t, eps} [ w(t) || target - eps_theta(z_t, t, c) ||^2 ]

with target = eps (or v = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0 for v-prediction) and w(t) = 1, or Min-SNR-gamma
w(t) = min(SNR(t), gamma) / SNR(t) (/(SNR(t) + 1) for v-prediction), SNR(t) = abar_t / (1 - abar_t).
DreamBooth (Ruiz et al. 2022, eq. 2) adds lambda * || eps' - eps_theta(z'_t', t', c_pr) ||^2 on the model's own
class samples. :func:`predict_batch` is one forward pass of it: (eps_theta(z_t, t, c), target, t) for a batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from diffusers.training_utils import compute_snr

if TYPE_CHECKING:  # annotations only: the objective's math imports no transformers
    from .prompt_encoder import PromptEncoder
    from .sd_base import SDComponents


def encode_latents(batch: dict, vae: torch.nn.Module) -> torch.Tensor:
    """z_0 = scaling_factor * a sample of q(z | x): (B, 3, H, W) pixels (or cached posterior parameters) ->
    (B, C, H/f, W/f), fp32."""
    if "latent_parameters" in batch:
        posterior = DiagonalGaussianDistribution(batch["latent_parameters"])
    else:
        posterior = vae.encode(batch["pixel_values"].to(vae.device, vae.dtype)).latent_dist
    return (posterior.sample().float() * vae.config.scaling_factor).contiguous()


def add_training_noise(
    latents: torch.Tensor, noise_scheduler, noise_offset: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw eps ~ N(0, I) (plus ``noise_offset`` * a per-channel constant, Guttenberg 2023) and t ~ U{0..T-1};
    return (z_t, eps, t)."""
    # randn(shape), not randn_like: randn_like keeps a non-contiguous layout (VAE latents are views of the posterior
    # parameters), which changes how many numbers the CPU generator draws, so cached and uncached runs would diverge
    noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype)
    if noise_offset:
        noise = noise + noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1, device=latents.device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device
    ).long()
    return noise_scheduler.add_noise(latents, noise, timesteps), noise, timesteps


def prediction_target(
    noise_scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """eps for epsilon-prediction, v for v-prediction (from the scheduler config)."""
    prediction_type = noise_scheduler.config.prediction_type
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction_type {prediction_type!r} is not supported; use 'epsilon' or 'v_prediction'")


def predict_batch(
    batch: dict, components: SDComponents, unet: torch.nn.Module, encode_prompts: PromptEncoder,
    noise_offset: float = 0.0, unet_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One latent-diffusion forward pass: (model prediction, target, timesteps), predictions of shape (B, C, h, w).
    ``unet_dtype`` is the dtype of the UNet's frozen weights (fp32 when the whole UNet trains)."""
    latents = encode_latents(batch, components.vae)
    noisy, noise, timesteps = add_training_noise(latents, components.noise_scheduler, noise_offset)
    hidden_states = encode_prompts(batch["prompts"], latents.device)
    model_pred = unet(noisy.to(unet_dtype), timesteps, hidden_states.to(unet_dtype)).sample
    return model_pred, prediction_target(components.noise_scheduler, latents, noise, timesteps), timesteps


def denoising_loss(
    model_pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor, noise_scheduler,
    snr_gamma: float | None = None,
) -> torch.Tensor:
    """Per-sample weighted MSE, shape (B,): mean over C, H, W of (pred - target)^2, times w(t) (Min-SNR-gamma)."""
    loss = F.mse_loss(model_pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, model_pred.ndim)))
    if snr_gamma is None:
        return loss
    snr = compute_snr(noise_scheduler, timesteps)
    weight = torch.clamp(snr, max=snr_gamma) / snr
    if noise_scheduler.config.prediction_type == "v_prediction":
        weight = torch.clamp(snr, max=snr_gamma) / (snr + 1)
    return loss * weight


def dreambooth_loss(
    model_pred: torch.Tensor, target: torch.Tensor, timesteps: torch.Tensor, noise_scheduler,
    snr_gamma: float | None = None, prior_loss_weight: float = 1.0, with_prior_preservation: bool = False,
) -> torch.Tensor:
    """Mean instance loss (+ ``prior_loss_weight`` x mean prior loss when the batch's second half holds class
    examples). The Min-SNR weights of the instance half use the instance half's own timesteps; the prior term is
    unweighted, as in the diffusers example (which crashes here by weighting B losses with 2B timesteps)."""
    if not with_prior_preservation:
        return denoising_loss(model_pred, target, timesteps, noise_scheduler, snr_gamma).mean()
    half = model_pred.shape[0] // 2
    instance = denoising_loss(model_pred[:half], target[:half], timesteps[:half], noise_scheduler, snr_gamma)
    prior = denoising_loss(model_pred[half:], target[half:], timesteps[half:], noise_scheduler, None)
    return instance.mean() + prior_loss_weight * prior.mean()
