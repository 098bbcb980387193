"""Schedulers (diffusers ``SchedulerMixin``): improved-DDPM / DDIM with the Gaussian diffusion schedule behind them, and
the EDM (Karras) / consistency-model samplers."""

from .gaussian_diffusion import (
    GaussianDiffusionSchedule,
    ModelDistribution,
    cosine_betas,
    linear_betas,
    make_betas,
    space_timesteps,
)
from .improved_diffusion_base import ImprovedDiffusionScheduler
from .scheduling_improved_ddim import ImprovedDDIMScheduler
from .scheduling_improved_ddpm import ImprovedDDPMScheduler
from .scheduling_karras import (
    ConsistencyScheduler, KarrasDiffusionScheduler, KarrasEulerScheduler, KarrasHeunScheduler,
    ProgressiveDistillationScheduler,
)

__all__ = [
    "ConsistencyScheduler",
    "GaussianDiffusionSchedule",
    "ImprovedDDIMScheduler",
    "ImprovedDDPMScheduler",
    "ImprovedDiffusionScheduler",
    "KarrasDiffusionScheduler",
    "KarrasEulerScheduler",
    "KarrasHeunScheduler",
    "ProgressiveDistillationScheduler",
    "ModelDistribution",
    "cosine_betas",
    "linear_betas",
    "make_betas",
    "space_timesteps",
]
