"""Ancestral sampling of Ho et al. (2020) with the improvements of Nichol & Dhariwal (2021), as a diffusers
scheduler numerically equal to improved-diffusion / guided-diffusion ``p_sample`` on any respacing."""

from __future__ import annotations

import torch
from diffusers import SchedulerMixin  # noqa: F401 - diffusers finds a component's loader base class in its module
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from .improved_diffusion_base import ImprovedDiffusionScheduler, IndexLike


class ImprovedDDPMScheduler(ImprovedDiffusionScheduler):
    """DDPM / improved-DDPM ancestral sampler: x_{t'} ~ N(μ_θ(x_t, t), Σ_θ(x_t, t)) on the respaced schedule.

    Configuration: see :class:`~diffusion_canon.schedulers.improved_diffusion_base.ImprovedDiffusionScheduler`.
    """

    def step(
        self,
        model_output: torch.Tensor,
        timestep: IndexLike,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
        *,
        guidance_gradient: torch.Tensor | None = None,
    ) -> DDPMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One ancestral step (Ho Alg. 2 line 4; ND Eq. 15 for learned variances).

        x_{t'} = μ_θ(x_t, t) + Σ_θ g + σ_t z with z ~ N(0, I), and no noise on the last step (t' = −1).

        Args:
            model_output: ``(B, C, …)``, or ``(B, 2C, …)`` for learned variances.
            timestep: a training timestep from ``self.timesteps`` (int, 0-d or ``(B,)`` tensor).
            sample: x_t, ``(B, C, …)``.
            generator: draws exactly one ``randn(sample.shape)`` per step that adds noise.
            return_dict: return a ``DDPMSchedulerOutput`` (else a tuple).
            guidance_gradient (keyword only, after diffusers' own arguments): g = s · ∇_{x_t} log p(y | x_t), ``(B, C, …)``; shifts the mean by Σ g (Dhariwal &
                Nichol 2021, Alg. 1; guided-diffusion ``condition_mean``).
        Returns:
            ``DDPMSchedulerOutput(prev_sample, pred_original_sample)`` (or the tuple), in ``sample``'s dtype.
        """
        self.check_step(model_output, sample, generator, return_dict, guidance_gradient=guidance_gradient)
        index = self.index_for_timestep(timestep)
        dist = self._distribution(model_output, sample, index)
        mean = dist.mean
        if guidance_gradient is not None:
            mean = mean.float() + dist.variance * guidance_gradient.float()
        prev_sample = mean
        nonzero = index != 0
        if bool(nonzero.any()) if isinstance(nonzero, torch.Tensor) else nonzero:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            scale = torch.exp(0.5 * dist.log_variance)
            if isinstance(nonzero, torch.Tensor):
                scale = scale * nonzero.float().view(-1, *([1] * (sample.ndim - 1)))
            prev_sample = mean + scale * noise
        prev_sample = prev_sample.to(sample.dtype)
        self.check_result(prev_sample)
        pred_original_sample = dist.pred_original_sample.to(sample.dtype)
        if not return_dict:
            return prev_sample, pred_original_sample
        return DDPMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
