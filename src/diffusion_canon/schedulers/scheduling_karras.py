"""The EDM denoiser of Karras et al. (2022) and its samplers, as diffusers schedulers numerically equal to
openai/consistency_models' ``KarrasDenoiser`` and ``karras_sample`` (Song et al. 2023).

The network F sees c_in(σ)·x and t(σ) = 1000·¼·log σ; the denoiser is D(x; σ) = c_skip(σ)·x + c_out(σ)·F:

* EDM preconditioning: c_skip = σ_d² / (σ² + σ_d²), c_out = σ·σ_d / √(σ² + σ_d²), c_in = 1 / √(σ² + σ_d²);
* consistency models (``boundary_condition=True``) shift σ by σ_min in c_skip and c_out, so D(x; σ_min) = x;
* a VP network (DDPM / improved DDPM, ``vp_alphas_cumprod``) sees x_t = x/√(1 + σ²) and its training timestep; as a
  consistency model it is f(x; σ) = b(σ)·x + (1 − b(σ))·D_VP(x; σ) with the boundary condition's
  b(σ) = σ_d² / ((σ − σ_min)² + σ_d²), so f(x; σ_min) = x and, away from σ_min, f is the VP network's own x̂₀ —
  a student initialised from a VP teacher starts as the teacher, as the reference's EDM students do.

The grid of levels is Karras et al.'s (evenly spaced in σ^(1/ρ)) or, for a VP network, evenly spaced in its training
timesteps (``spacing="timesteps"``: Salimans & Ho's t = i/N).

A scheduler's ``timesteps`` are the σ at which the network is evaluated, in order; ``scale_model_input`` gives F its
input and ``model_timestep`` its t; ``step`` takes F's output. :func:`~diffusion_canon.pipelines.sampling.denoise`
runs them like any other scheduler, calling ``begin_step`` before each evaluation (where Heun's churn raises σ).

RNG: ``init_noise_sigma`` scales x_T (drawn first by the pipeline); the Heun sampler then draws one
``randn(sample.shape)`` at the start of every step (used only where it churns), the multistep sampler one after every
evaluation but the last — the reference's order, so one ``torch.Generator`` reproduces ``karras_sample`` under
``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from ..checks import check_choice, check_number

SAMPLERS = ("heun", "euler", "onestep", "multistep", "progdist")
SPACINGS = ("karras", "timesteps")
VP_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass
class KarrasSchedulerOutput(BaseOutput):
    """``prev_sample``: x at the next evaluation point; ``denoised``: D(x; σ) of this evaluation."""

    prev_sample: torch.Tensor
    denoised: torch.Tensor


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """Karras et al. (2022) eq. 5: n noise levels from σ_max to σ_min evenly spaced in σ^(1/ρ), then 0 (float32)."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def as_batch(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or ``[N]`` σ (or scaling) broadcast against ``[N, C, H, W]``."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(-1, *([1] * (like.ndim - 1))) if value.ndim else value


def vp_config(scheduler) -> dict:
    """The Karras-scheduler config that makes a VP (DDPM / improved-DDPM) model a denoiser on σ = √((1 − ᾱ)/ᾱ):
    its ᾱ table and prediction type, σ_min and σ_max the σ of its first and last training timestep, no clipping of
    D (the samplers clamp only what a caller asks for)."""
    config = scheduler.config
    if config.prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"a VP teacher must predict epsilon or v, got prediction_type={config.prediction_type!r}")
    if config.get("rescale_timesteps"):
        raise ValueError("a VP teacher trained with rescale_timesteps is not supported as a Karras denoiser yet")
    alphas = [float(a) for a in scheduler.alphas_cumprod.double()]
    sigma = lambda a: ((1 - a) / a) ** 0.5  # noqa: E731
    return dict(sigma_min=sigma(alphas[0]), sigma_max=sigma(alphas[-1]), vp_alphas_cumprod=alphas,
                vp_prediction_type=config.prediction_type, clip_denoised=False)


class KarrasDiffusionScheduler(SchedulerMixin, ConfigMixin):
    """The EDM denoiser's preconditioning and σ grid, shared by the samplers (see the module docstring).

    Args:
        sigma_min, sigma_max: the σ range of the grid (and σ_min of the boundary condition).
        sigma_data: σ_d, the data's standard deviation the preconditioning assumes (0.5 for images in [−1, 1]).
        rho: ρ of the Karras grid.
        boundary_condition: consistency-model preconditioning (D(x; σ_min) = x) instead of EDM's.
        clip_denoised: clamp D(x; σ) to [−1, 1] at every evaluation (the reference's ``clip_denoised``).
        vp_alphas_cumprod, vp_prediction_type: a VP model (ours: ADM / improved-DDPM folders) as the denoiser — its
            training ᾱ_t and what it predicts (ε, v, or x₀: "sample"); see :func:`vp_config`.
        spacing: where the grid's levels lie: "karras" (evenly in σ^(1/ρ)) or "timesteps" (a VP model only: evenly
            in its training timesteps, from the last, σ_max, to the first, σ_min).
    """

    order = 1

    @register_to_config
    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        rho: float = 7.0,
        boundary_condition: bool = False,
        clip_denoised: bool = True,
        vp_alphas_cumprod: Sequence[float] | None = None,
        vp_prediction_type: str = "epsilon",
        spacing: str = "karras",
    ):
        check_choice("spacing", spacing, SPACINGS)
        if spacing == "timesteps" and vp_alphas_cumprod is None:
            raise ValueError("spacing='timesteps' spaces the grid over a VP model's training timesteps: it needs "
                             "vp_alphas_cumprod")
        if vp_alphas_cumprod is not None:
            check_choice("vp_prediction_type", vp_prediction_type, VP_PREDICTION_TYPES)
            alphas = torch.tensor(vp_alphas_cumprod, dtype=torch.float64)
            if alphas.ndim != 1 or len(alphas) < 2 or not ((alphas > 0) & (alphas < 1)).all():
                raise ValueError("vp_alphas_cumprod must list the training ᾱ_t, each in (0, 1)")
            # log σ_t of the training timesteps: t(σ) interpolates between them
            self.vp_log_sigmas = (((1 - alphas) / alphas) ** 0.5).log().float()
        check_number("sigma_min", sigma_min, minimum=0)
        check_number("sigma_max", sigma_max, minimum=0)
        if not sigma_min < sigma_max:
            raise ValueError(f"sigma_min={sigma_min} must be below sigma_max={sigma_max}")
        check_number("sigma_data", sigma_data, minimum=0)
        check_number("rho", rho, minimum=0)
        self.timesteps = torch.empty(0)
        self.num_inference_steps = 0
        self._index = 0

    @property
    def init_noise_sigma(self) -> float:
        return self.config.sigma_max

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) at σ (the reference's ``get_scalings`` / ``get_scalings_for_boundary_condition``;
        for a VP teacher, x_t = x_σ/√(1 + σ²) and x̂_0 = x_σ − σ·ε̂, x_σ/(1 + σ²) − σ/√(1 + σ²)·v̂, or x̂_0 itself)."""
        sigma_data, sigma_min = self.config.sigma_data, self.config.sigma_min
        if self.config.vp_alphas_cumprod is not None:
            c_in = 1 / (sigma**2 + 1) ** 0.5
            if self.config.vp_prediction_type == "epsilon":
                c_skip, c_out = torch.ones_like(sigma), -sigma
            elif self.config.vp_prediction_type == "sample":
                c_skip, c_out = torch.zeros_like(sigma), torch.ones_like(sigma)
            else:
                c_skip, c_out = 1 / (sigma**2 + 1), -sigma * c_in
            if self.config.boundary_condition:  # b·x + (1 − b)·D_VP
                b = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
                c_skip, c_out = b + (1 - b) * c_skip, (1 - b) * c_out
            return c_skip, c_out, c_in
        c_in = 1 / (sigma**2 + sigma_data**2) ** 0.5
        if self.config.boundary_condition:
            c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
            c_out = (sigma - sigma_min) * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
        else:
            c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
            c_out = sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
        return c_skip, c_out, c_in

    def model_timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """What the network receives for σ: t = 1000·¼·log(σ + 1e-44) (σ = 0 stays finite); for a VP teacher the
        training timestep whose σ_t = √((1 − ᾱ_t)/ᾱ_t) is σ, linear in log σ between two of them (clamped to
        [0, T − 1])."""
        sigma = torch.as_tensor(sigma, dtype=torch.float32)
        if self.config.vp_alphas_cumprod is None:
            return 1000 * 0.25 * torch.log(sigma + 1e-44)
        log_sigmas = self.vp_log_sigmas.to(sigma.device)
        log_sigma = sigma.clamp_min(1e-44).log()
        low = (torch.searchsorted(log_sigmas, log_sigma.reshape(-1), right=True) - 1).clamp(0, len(log_sigmas) - 2)
        weight = ((log_sigma.reshape(-1) - log_sigmas[low]) / (log_sigmas[low + 1] - log_sigmas[low])).clamp(0, 1)
        return (low + weight).reshape(sigma.shape)

    def scale_model_input(self, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
        """c_in(σ)·x, the network's input at σ = ``timestep``."""
        return as_batch(self.scalings(torch.as_tensor(timestep, dtype=torch.float32))[2], sample) * sample

    def denoised(self, model_output: torch.Tensor, sample: torch.Tensor, sigma: torch.Tensor | float,
                 clip: bool | None = None) -> torch.Tensor:
        """D(x; σ) = c_out·F + c_skip·x, clamped to [−1, 1] when ``clip`` (default: ``clip_denoised``)."""
        c_skip, c_out, _ = self.scalings(torch.as_tensor(sigma, dtype=torch.float32))
        model_output = model_output[:, : sample.shape[1]]  # a learned variance, if any, plays no part in D
        denoised = as_batch(c_out, sample) * model_output + as_batch(c_skip, sample) * sample
        return denoised.clamp(-1, 1) if (self.config.clip_denoised if clip is None else clip) else denoised

    def denoise(self, network, sample: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """D(x; σ) with the network called here, unclipped (the reference's ``KarrasDenoiser.denoise``, which the
        training losses use): ``network(c_in·x, t(σ))``, ``sigmas`` ``[N]``."""
        output = network(self.scale_model_input(sample, sigmas), self.model_timestep(sigmas))
        return self.denoised(output, sample, sigmas, clip=False)

    def level(self, position: torch.Tensor) -> torch.Tensor:
        """σ at a fractional ``position`` ∈ [0, 1] of the grid (σ_max at 0, σ_min at 1), float32 as the reference's
        losses compute it; ``spacing="timesteps"``: the σ of training timestep (T − 1)·(1 − position), log σ
        linear between two of them."""
        config = self.config
        if config.spacing == "timesteps":
            position = torch.as_tensor(position, dtype=torch.float32)
            timestep = (len(self.vp_log_sigmas) - 1) * (1 - position.clamp(0, 1))
            low = timestep.floor().long().clamp(max=len(self.vp_log_sigmas) - 2)
            log_sigmas = self.vp_log_sigmas.to(timestep.device)
            return torch.lerp(log_sigmas[low], log_sigmas[low + 1], timestep - low).exp()
        max_inv_rho, min_inv_rho = config.sigma_max ** (1 / config.rho), config.sigma_min ** (1 / config.rho)
        return (max_inv_rho + position * (min_inv_rho - max_inv_rho)) ** config.rho

    def grid(self, steps: int) -> torch.Tensor:
        """The reference's ``get_sigmas_karras(steps, sigma_min, sigma_max, rho)``: steps levels, then 0
        (``spacing="timesteps"``: ``steps`` evenly spaced training timesteps' σ, then 0)."""
        check_number("num_inference_steps", steps, minimum=1, integer=True)
        config = self.config
        if config.spacing == "timesteps":
            levels = self.level(torch.linspace(0, 1, steps))
            return torch.cat([levels, levels.new_zeros([1])])
        return karras_sigmas(steps, config.sigma_min, config.sigma_max, config.rho)

    def begin_step(self, sample: torch.Tensor, timestep: torch.Tensor, generator=None) -> torch.Tensor:
        """Called before each evaluation: the sample the network is evaluated at (unchanged here)."""
        return sample

    def _output(self, prev_sample: torch.Tensor, denoised: torch.Tensor, return_dict: bool):
        self._index += 1
        return KarrasSchedulerOutput(prev_sample, denoised) if return_dict else (prev_sample, denoised)

    def __len__(self) -> int:
        return len(self.timesteps)


class KarrasHeunScheduler(KarrasDiffusionScheduler):
    """Karras et al. (2022) Algorithm 2: Heun steps between the levels of the grid, the last one (to σ = 0) Euler,
    with optional churn: at levels in [s_tmin, s_tmax] σ is first raised to σ̂ = σ·(1 + γ), γ = min(s_churn / steps,
    √2 − 1), by adding noise of std s_noise·√(σ̂² − σ²). ``timesteps``: σ̂_i, then σ_{i+1} for the correction."""

    order = 2

    def set_timesteps(self, num_inference_steps: int, device=None, s_churn: float = 0.0, s_tmin: float = 0.0,
                      s_tmax: float = float("inf"), s_noise: float = 1.0) -> None:
        """``num_inference_steps`` is the reference's ``--steps`` (2·steps − 1 network evaluations)."""
        for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
            check_number(name, value, minimum=0)
        if not (isinstance(s_tmax, (int, float)) and not isinstance(s_tmax, bool) and s_tmax >= s_tmin):
            raise ValueError(f"s_tmax must be a number >= s_tmin={s_tmin}, got {s_tmax!r}")
        self.sigmas = self.grid(num_inference_steps)
        self.s_noise = s_noise
        self.gammas = [min(s_churn / (len(self.sigmas) - 1), 2**0.5 - 1) if s_tmin <= self.sigmas[i] <= s_tmax else 0.0
                       for i in range(len(self.sigmas) - 1)]
        points = []
        for i, gamma in enumerate(self.gammas):
            points.append(self.sigmas[i] * (gamma + 1))
            if self.sigmas[i + 1] > 0:
                points.append(self.sigmas[i + 1])
        self.timesteps = torch.stack(points).to(device)
        self.num_inference_steps, self._index, self._first = num_inference_steps, 0, None
        self._plan = [(i, first) for i in range(len(self.gammas)) for first in (True, False)
                      if first or self.sigmas[i + 1] > 0]

    def begin_step(self, sample: torch.Tensor, timestep: torch.Tensor, generator=None) -> torch.Tensor:
        i, first = self._plan[self._index]
        if not first:
            return sample
        eps = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype) * self.s_noise
        if self.gammas[i] > 0:
            sigma, sigma_hat = self.sigmas[i], self.timesteps[self._index].cpu()
            sample = sample + eps * (sigma_hat**2 - sigma**2) ** 0.5
        return sample

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, generator=None,
             return_dict: bool = True) -> KarrasSchedulerOutput | tuple:
        i, first = self._plan[self._index]
        sigma = self.timesteps[self._index].cpu()
        denoised = self.denoised(model_output, sample, sigma)
        d = (sample - denoised) / as_batch(sigma, sample)
        if first:
            dt = self.sigmas[i + 1] - sigma
            if self.sigmas[i + 1] == 0:  # the last step: Euler
                return self._output(sample + d * dt, denoised, return_dict)
            self._first = (sample, d, dt)
            return self._output(sample + d * dt, denoised, return_dict)
        start, d_first, dt = self._first
        return self._output(start + (d_first + d) / 2 * dt, denoised, return_dict)


class KarrasEulerScheduler(KarrasDiffusionScheduler):
    """Euler steps of the probability-flow ODE dx/dσ = (x − D(x; σ)) / σ over the grid (deterministic)."""

    def set_timesteps(self, num_inference_steps: int, device=None) -> None:
        """``num_inference_steps`` is the reference's ``--steps`` (as many network evaluations)."""
        self.sigmas = self.levels(num_inference_steps)
        self.timesteps = self.sigmas[:-1].to(device)
        self.num_inference_steps, self._index = num_inference_steps, 0

    def levels(self, num_inference_steps: int) -> torch.Tensor:
        """The levels the steps go through, the last one where sampling ends: the grid, then 0."""
        return self.grid(num_inference_steps)

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, generator=None,
             return_dict: bool = True) -> KarrasSchedulerOutput | tuple:
        sigma = self.sigmas[self._index]
        denoised = self.denoised(model_output, sample, sigma)
        d = (sample - denoised) / as_batch(sigma, sample)
        return self._output(sample + d * (self.sigmas[self._index + 1] - sigma), denoised, return_dict)


class ProgressiveDistillationScheduler(KarrasEulerScheduler):
    """A progressively distilled student's sampler (the reference's ``progdist``): N Euler steps over the N + 1
    levels from σ_max to σ_min that the student was distilled on, ending at x(σ_min) — for a VP network with the
    timestep grid, N DDIM steps (Salimans & Ho 2022)."""

    def levels(self, num_inference_steps: int) -> torch.Tensor:
        """``num_inference_steps``: the student's N (as many network evaluations; the reference's ``--steps``); its
        N + 1 levels, σ_max to σ_min."""
        check_number("num_inference_steps", num_inference_steps, minimum=1, integer=True)
        return self.grid(num_inference_steps + 1)[:-1]


class ConsistencyScheduler(KarrasDiffusionScheduler):
    """Consistency-model sampling (Song et al. 2023, Algorithm 1): one step maps x_T at σ_max to D(x_T; σ_max); the
    multistep sampler alternates D(x; σ_i) and re-noising to σ_{i+1} with std √(σ_{i+1}² − σ_min²), the levels being
    the reference's ``--ts`` indices into a Karras grid of ``grid_size`` (its ``--steps``) points."""

    def set_timesteps(self, num_inference_steps: int | None = None, device=None,
                      timesteps: Sequence[int] | None = None, grid_size: int = 40) -> None:
        """``timesteps`` (the reference's ``--ts``): increasing indices into the grid of ``grid_size`` levels from 0
        (σ_max); the last is not evaluated but sets the final re-noising, so it should be ``grid_size − 1`` (σ_min: a
        clean sample) — the reference accepts any and leaves that level's noise in. ``num_inference_steps=n`` alone:
        n evaluations at n + 1 indices evenly spread over the grid (1 = onestep at σ_max)."""
        check_number("grid_size", grid_size, minimum=1, integer=True)
        if timesteps is None:
            check_number("num_inference_steps", num_inference_steps, minimum=1, maximum=max(grid_size - 1, 1),
                         integer=True)
            n = num_inference_steps
            timesteps = [0] if n == 1 else [round(k * (grid_size - 1) / n) for k in range(n + 1)]
        indices = list(timesteps)
        if not indices or any(isinstance(k, bool) or not isinstance(k, int) for k in indices):
            raise TypeError(f"timesteps must be a non-empty list of int grid indices, got {timesteps!r}")
        if indices[0] != 0 or any(b <= a for a, b in zip(indices, indices[1:])) or indices[-1] > grid_size - 1:
            raise ValueError(f"timesteps={indices} must increase from 0 and stay within the grid of grid_size={grid_size} "
                             f"levels (0 … {grid_size - 1})")
        if len(indices) > 1 and grid_size < 2:
            raise ValueError(f"multistep sampling (timesteps={indices}) needs grid_size >= 2, got {grid_size}")
        config = self.config
        if len(indices) == 1:  # onestep: D(x_T; σ_max) at the grid's first level
            self.levels = [float(self.grid(grid_size)[0])]
        else:
            max_rho, min_rho = config.sigma_max ** (1 / config.rho), config.sigma_min ** (1 / config.rho)
            self.levels = [(max_rho + k / (grid_size - 1) * (min_rho - max_rho)) ** config.rho for k in indices]
        self.indices, self.grid_size = indices, grid_size
        evaluated = self.levels if len(indices) == 1 else self.levels[:-1]
        self.timesteps = torch.tensor(evaluated, dtype=torch.float32, device=device)
        self.num_inference_steps, self._index = len(evaluated), 0

    def step(self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor, generator=None,
             return_dict: bool = True) -> KarrasSchedulerOutput | tuple:
        config = self.config
        denoised = self.denoised(model_output, sample, self.timesteps[self._index].cpu())
        if len(self.indices) == 1:
            return self._output(denoised, denoised, return_dict)
        next_level = min(max(self.levels[self._index + 1], config.sigma_min), config.sigma_max)
        noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        prev_sample = denoised + noise * math.sqrt(next_level**2 - config.sigma_min**2)
        return self._output(prev_sample, denoised, return_dict)
