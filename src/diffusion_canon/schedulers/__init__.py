"""Improved-DDPM / DDIM schedulers (diffusers ``SchedulerMixin``) and the Gaussian diffusion schedule behind them."""

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

__all__ = [
    "GaussianDiffusionSchedule",
    "ImprovedDDIMScheduler",
    "ImprovedDDPMScheduler",
    "ImprovedDiffusionScheduler",
    "ModelDistribution",
    "cosine_betas",
    "linear_betas",
    "make_betas",
    "space_timesteps",
]
