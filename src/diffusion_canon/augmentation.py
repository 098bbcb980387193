"""Conditioning augmentation of Cascaded Diffusion Models (Ho et al. 2021, §4.1–4.2).

A super-resolution stage is trained on *true* low-resolution images but, in a cascade, sees the previous stage's
*samples*. Corrupting the conditioning during training makes the stage robust to that mismatch:

* **Gaussian noise** (most useful at low resolution): the conditioning z_0 is pushed through the forward process to
  a level s, z_s = √ᾱ_s z_0 + √(1 − ᾱ_s) ε (Ho et al. 2020 eq. 4), and s is given to the network
  (:class:`~diffusion_canon.models.sr_unet.SuperResolutionUNet2DModel` embeds it). Unaugmented conditioning is level
  0 *without* noise — the network cannot tell it from z_0, whose noise std √(1 − ᾱ_0) is ~1e-2 or less.
* **Gaussian blur** (for higher-resolution stages): a normalised k×k Gaussian kernel with σ ~ U[σ_min, σ_max]; the
  level is not embedded.

At sampling time (:mod:`~diffusion_canon.pipelines.pipeline_cascade`) the same level s is applied in one of two ways:
**non-truncated** — the base runs to x_0 and :func:`noise_conditioning` re-noises it to z_s; **truncated** — the base's
reverse process stops at step s (:func:`truncated_timesteps`) and z_s is its sample there. No augmentation is applied
at inference unless asked.

RNG: each function draws from ``generator`` in a fixed documented order, so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor

from .schedulers.improved_diffusion_base import ImprovedDiffusionScheduler


def check_noise_level(noise_level: int | torch.Tensor, num_train_timesteps: int, name: str = "noise_level") -> None:
    """``ValueError`` unless every level is an integer in [0, T)."""
    levels = torch.as_tensor(noise_level)
    if levels.is_floating_point() or levels.dtype == torch.bool or bool(((levels < 0) | (levels >= num_train_timesteps)).any()):
        raise ValueError(f"{name} must be integers in [0, {num_train_timesteps}) (num_train_timesteps), got {noise_level!r}")


def noise_conditioning(
    low_res: torch.Tensor,
    noise_level: int | torch.Tensor,
    scheduler: ImprovedDiffusionScheduler,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """z_s ~ q(z_s | z_0) = N(√ᾱ_s z_0, (1 − ᾱ_s) I) on ``scheduler``'s training schedule.

    Args:
        low_res: z_0, ``[N, C, h, w]`` in [−1, 1].
        noise_level: s, a scalar or ``[N]`` integers in [0, T).
        scheduler: defines ᾱ (the stage's own training diffusion).
        generator: draws one ``randn(low_res.shape)``.
    Returns:
        z_s, ``[N, C, h, w]`` (float32).
    """
    check_noise_level(noise_level, scheduler.config.num_train_timesteps)
    low_res = low_res.float()
    noise = randn_tensor(low_res.shape, generator=generator, device=low_res.device, dtype=low_res.dtype)
    levels = torch.as_tensor(noise_level, device=low_res.device).long().expand(low_res.shape[0])
    return scheduler.add_noise(low_res, noise, levels)


def gaussian_kernel(sigma: float | torch.Tensor, kernel_size: int) -> torch.Tensor:
    """1-D Gaussian kernels exp(−x²/2σ²) / Σ, x ∈ {−k//2 … k//2}, one row per σ: ``[len(σ), k]`` (rows sum to 1)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1)
    if bool((sigma <= 0).any()):
        raise ValueError(f"blur sigma must be > 0, got {sigma.flatten().tolist()}")
    x = torch.arange(kernel_size, dtype=torch.float32, device=sigma.device) - kernel_size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum(dim=1, keepdim=True)


def gaussian_blur(images: torch.Tensor, sigma: float | torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Blur ``[N, C, h, w]`` images with a separable normalised Gaussian (σ scalar or ``[N]``), reflect padding."""
    n, c, h, w = images.shape
    kernel = gaussian_kernel(sigma, kernel_size).to(images.device, images.dtype)
    kernel = kernel.expand(n, -1) if kernel.shape[0] == 1 else kernel
    if kernel.shape[0] != n:
        raise ValueError(f"sigma must be a scalar or hold one value per image ({n}), got {kernel.shape[0]}")
    pad = kernel_size // 2
    # per-image kernels: fold the batch into the channels and convolve grouped, one group per (image, channel)
    weights = kernel.repeat_interleave(c, dim=0)
    x = images.reshape(1, n * c, h, w)
    x = F.conv2d(F.pad(x, (pad, pad, 0, 0), mode="reflect" if w > pad else "replicate"), weights[:, None, None, :], groups=n * c)
    x = F.conv2d(F.pad(x, (0, 0, pad, pad), mode="reflect" if h > pad else "replicate"), weights[:, None, :, None], groups=n * c)
    return x.reshape(n, c, h, w)


@dataclass(frozen=True)
class ConditioningAugmentation:
    """The training-time augmentation of one super-resolution stage.

    Args:
        noise_probability: chance that an example's conditioning is noised (else level 0, no noise).
        max_noise_level: noised examples draw s uniformly from {0, …, max_noise_level − 1} (≤ T).
        blur_probability: chance that an example's conditioning is blurred (before any noise).
        blur_sigma: (σ_min, σ_max) of the uniform blur σ.
        blur_kernel_size: odd k of the k×k kernel.
    """

    noise_probability: float = 0.0
    max_noise_level: int = 1000
    blur_probability: float = 0.0
    blur_sigma: Sequence[float] = (0.4, 0.6)
    blur_kernel_size: int = 3

    def __post_init__(self) -> None:
        for name in ("noise_probability", "blur_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if self.max_noise_level < 1:
            raise ValueError(f"max_noise_level must be >= 1, got {self.max_noise_level}")
        low, high = self.blur_sigma
        if not 0 < low <= high:
            raise ValueError(f"blur_sigma must be (min, max) with 0 < min <= max, got {tuple(self.blur_sigma)}")
        gaussian_kernel(low, self.blur_kernel_size)  # validates the kernel size

    def __call__(
        self,
        low_res: torch.Tensor,
        scheduler: ImprovedDiffusionScheduler,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch of conditioning images.

        Draw order from ``generator`` (or the global RNG): blur coin flips ``rand(N)``, blur σ ``rand(N)``, noise coin
        flips ``rand(N)``, levels ``randint(N)``, noise ``randn(low_res.shape)`` — each only when its probability is
        positive.

        Args:
            low_res: z_0, ``[N, C, h, w]`` in [−1, 1].
            scheduler: the stage's training diffusion (ᾱ for the noise; T bounds ``max_noise_level``).
        Returns:
            (augmented conditioning ``[N, C, h, w]``, levels ``[N]`` int64 to feed the network).
        """
        n, device = low_res.shape[0], low_res.device
        low_res = low_res.float()
        levels = torch.zeros(n, dtype=torch.long, device=device)
        if self.blur_probability > 0:
            blurred = torch.rand(n, generator=generator, device=device) < self.blur_probability
            low, high = self.blur_sigma
            sigma = low + (high - low) * torch.rand(n, generator=generator, device=device)
            low_res = torch.where(blurred[:, None, None, None], gaussian_blur(low_res, sigma, self.blur_kernel_size), low_res)
        if self.noise_probability > 0:
            num_train = scheduler.config.num_train_timesteps
            if self.max_noise_level > num_train:
                raise ValueError(f"max_noise_level={self.max_noise_level} exceeds num_train_timesteps={num_train}")
            noised = torch.rand(n, generator=generator, device=device) < self.noise_probability
            drawn = torch.randint(0, self.max_noise_level, (n,), generator=generator, device=device)
            levels = torch.where(noised, drawn, levels)
            z_s = noise_conditioning(low_res, levels, scheduler, generator)
            low_res = torch.where(noised[:, None, None, None], z_s, low_res)
        return low_res, levels


def truncated_timesteps(timesteps: torch.Tensor | Sequence[int], noise_level: int) -> list[int]:
    """The base's sampling timesteps for truncated conditioning augmentation at level s.

    ``timesteps`` are the base's full inference schedule (training timesteps, any order). The truncated schedule
    keeps those above s and adds s itself, descending: ``[t_1 > … > t_k > s]``. Running the base's steps at
    ``t_1 … t_k`` (every timestep but the last) on the respaced process over this schedule ends exactly at the
    marginal level s, i.e. with a sample z_s of p_θ(z_s) — the conditioning the SR stage receives, with s embedded.
    """
    kept = sorted({int(t) for t in torch.as_tensor(timesteps).tolist() if int(t) > noise_level} | {int(noise_level)})
    return kept[::-1]


def levels_tensor(noise_level: int | None, batch_size: int, num_train_timesteps: int, device=None) -> torch.Tensor:
    """``[N]`` int64 levels for a stage's network: ``noise_level`` (checked to lie in [0, T)) or 0 when ``None``."""
    if noise_level is None:
        return torch.zeros(batch_size, dtype=torch.long, device=device)
    if isinstance(noise_level, bool) or not isinstance(noise_level, (int, np.integer)):
        raise TypeError(f"noise_level must be an int in [0, {num_train_timesteps}) or None, got {noise_level!r}")
    check_noise_level(int(noise_level), num_train_timesteps)
    return torch.full((batch_size,), int(noise_level), dtype=torch.long, device=device)


__all__ = [
    "ConditioningAugmentation",
    "check_noise_level",
    "gaussian_blur",
    "gaussian_kernel",
    "levels_tensor",
    "noise_conditioning",
    "truncated_timesteps",
]

