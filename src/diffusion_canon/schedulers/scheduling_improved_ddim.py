"""DDIM(η) (Song et al. 2021) on the improved-diffusion respaced schedule, as a diffusers scheduler numerically equal
to improved-diffusion / guided-diffusion ``ddim_sample``."""

from __future__ import annotations

import torch
from diffusers import SchedulerMixin  # noqa: F401 - diffusers finds a component's loader base class in its module
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_flag, check_number, check_tensor
from .improved_diffusion_base import ImprovedDiffusionScheduler, IndexLike


class ImprovedDDIMScheduler(ImprovedDiffusionScheduler):
    """DDIM sampler: deterministic at η = 0, ancestral-DDPM-like at η = 1, on the same respacing as
    :class:`ImprovedDDPMScheduler`. Configuration: see
    :class:`~diffusion_canon.schedulers.improved_diffusion_base.ImprovedDiffusionScheduler`."""

    def step(
        self,
        model_output: torch.Tensor,
        timestep: IndexLike,
        sample: torch.Tensor,
        eta: float = 0.0,
        use_clipped_model_output: bool = True,
        generator: torch.Generator | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
        *,
        guidance_gradient: torch.Tensor | None = None,
    ) -> DDIMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """One DDIM step (Song Eq. 12), with ᾱ' the ᾱ of the previous kept timestep (1 after the last):

            x_{t'} = √ᾱ' x̂_0 + √(1 − ᾱ' − σ²) ε̂ + σ z,   σ = η √((1 − ᾱ')/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ')   (Song Eq. 16)

        The arguments are in the order of diffusers' ``DDIMScheduler.step``, then ``guidance_gradient``.

        Args:
            model_output, timestep, sample: as :meth:`ImprovedDDPMScheduler.step`; ``model_output`` may carry ``2C``
                channels (the variance half is ignored).
            eta: η ≥ 0 (0 = deterministic DDIM, 1 = ancestral-DDPM-like).
            use_clipped_model_output: re-derive ε̂ from the clipped / thresholded x̂_0, as the reference does (the
                default, unlike diffusers' ``False``); ``False`` keeps the network's own ε̂.
            generator: a step with η > 0 that is not the last draws exactly one ``randn(sample.shape)`` from it.
            variance_noise: z given instead of drawn (then nothing is drawn).
            return_dict: return a ``DDIMSchedulerOutput`` (else a tuple).
            guidance_gradient (keyword only): g = s · ∇ log p(y | x_t) applies score-form guidance first (Dhariwal &
                Nichol 2021, Alg. 2; guided-diffusion ``condition_score``): ε̂ ← ε̂ − √(1 − ᾱ_t) g, x̂_0 re-derived.

        Returns:
            ``DDIMSchedulerOutput(prev_sample, pred_original_sample)`` or the tuple, in ``sample``'s dtype.
        """
        check_number("eta", eta, minimum=0)
        check_flag("use_clipped_model_output", use_clipped_model_output)
        if variance_noise is not None:
            check_tensor("variance_noise", variance_noise)
        schedule = self.schedule
        self.check_step(model_output, sample, generator, return_dict, guidance_gradient=guidance_gradient,
                        variance_noise=variance_noise)
        index = self.index_for_timestep(timestep)
        pred_start = self._distribution(model_output, sample, index).pred_original_sample
        alpha_bar = schedule.extract("alphas_cumprod", index, sample)
        alpha_bar_prev = schedule.extract("alphas_cumprod_prev", index, sample)
        # ε̂ as the network gave it (x̂_0 before clipping), or re-derived from the clipped x̂_0 (the reference)
        unclipped = None if use_clipped_model_output else self._distribution(model_output, sample, index, clip=False)
        eps = schedule.predict_noise_from_start(sample, index, pred_start if unclipped is None else
                                                unclipped.pred_original_sample)
        if guidance_gradient is not None:
            eps = eps - (1 - alpha_bar).sqrt() * guidance_gradient
            pred_start = schedule.predict_start_from_noise(sample, index, eps)
            if use_clipped_model_output:
                eps = schedule.predict_noise_from_start(sample, index, pred_start)
        sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
        prev_sample = pred_start * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
        nonzero = index != 0
        if eta > 0 and (bool(nonzero.any()) if isinstance(nonzero, torch.Tensor) else nonzero):
            noise = variance_noise
            if noise is None:
                noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
            if isinstance(nonzero, torch.Tensor):
                sigma = sigma * nonzero.float().view(-1, *([1] * (sample.ndim - 1)))
            prev_sample = prev_sample + sigma * noise
        prev_sample = prev_sample.to(sample.dtype)
        self.check_result(prev_sample)
        pred_start = pred_start.to(sample.dtype)
        if not return_dict:
            return prev_sample, pred_start
        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_start)

    def reverse_step(
        self, model_output: torch.Tensor, timestep: IndexLike, sample: torch.Tensor, return_dict: bool = True
    ) -> DDIMSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """DDIM inversion, the deterministic η = 0 ODE run forwards (Song Eq. 12 reversed; the reference's
        ``ddim_reverse_sample``): x_{t⁺} = √ᾱ_{t⁺} x̂_0 + √(1 − ᾱ_{t⁺}) ε̂, t⁺ the next kept timestep.

        Iterate over ``self.timesteps.flip(0)`` (ascending), feeding the network ``(x_t, t)``; ``prev_sample`` of
        the output is x_{t⁺}. x̂_0 is clipped as configured and ε̂ re-derived from it."""
        schedule = self.schedule
        index = self.index_for_timestep(timestep)
        pred_start = self._distribution(model_output, sample, index).pred_original_sample
        eps = schedule.predict_noise_from_start(sample, index, pred_start)
        alpha_bar_next = schedule.extract("alphas_cumprod_next", index, sample)
        next_sample = pred_start * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps
        next_sample, pred_start = next_sample.to(sample.dtype), pred_start.to(sample.dtype)
        if not return_dict:
            return next_sample, pred_start
        return DDIMSchedulerOutput(prev_sample=next_sample, pred_original_sample=pred_start)
