"""The training objectives of the EDM framework (Karras et al. 2022) and of few-step distillation, numerically equal to
openai/consistency_models' ``KarrasDenoiser.training_losses``, ``consistency_losses`` and ``progdist_losses``:

* **EDM denoising** — ‖D(x₀ + σε; σ) − x₀‖² weighted per σ;
* **consistency distillation / training** (Song et al. 2023) — a noise level σ_n of an N-point Karras grid and the
  next one σ_{n+1}; one ODE step from x₀ + σ_n ε down to σ_{n+1} (Heun with a teacher's denoiser: distillation;
  Euler with x₀ itself as the denoiser: training), then d(f_θ(x_{σ_n}, σ_n), f_θ⁻(x̂_{σ_{n+1}}, σ_{n+1})) with the
  target network θ⁻ (the EMA);
* **progressive distillation in the EDM framework** (Salimans & Ho 2022) — two teacher Euler steps σ_n → σ_{n+½} →
  σ_{n+1} on a grid of N, the student's target the denoiser that one Euler step from σ_n would need to land there.

Networks are functions ``network(c_in·x, t)`` with t = 1000·¼·log σ; the denoisers' preconditioning is a Karras
scheduler's (:class:`~diffusion_canon.schedulers.scheduling_karras.KarrasDiffusionScheduler`, ``boundary_condition``
for consistency models). Distances: l2, l1 and l2-32 (both sides resized to 32×32 first). LPIPS, the reference's
default, needs pretrained VGG weights that cannot be had offline, so it is not offered.

RNG: each loss draws from ``generator`` what the reference draws from the global RNG, in its order — ε of
``x_start``'s shape, then (distillation losses) the ``[N]`` grid indices — so one ``torch.Generator`` reproduces the
reference under ``torch.manual_seed``. The consistency loss also rewinds torch's global RNG between the online and
the target network, as the reference does, so both see the same dropout masks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_number
from ..schedulers.scheduling_karras import KarrasDiffusionScheduler, as_batch

Network = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
WEIGHT_SCHEDULES = ("snr", "snr+1", "karras", "truncated-snr", "uniform")
LOSS_NORMS = ("l2", "l1", "l2-32", "pseudo-huber")
INDEX_DISTRIBUTIONS = ("uniform", "lognormal")


def loss_weights(weight_schedule: str, sigmas: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) from the SNR σ⁻²: "snr", "snr+1", "karras" (snr + 1/σ_d², EDM's), "truncated-snr" (max(snr, 1)),
    "uniform"."""
    check_choice("weight_schedule", weight_schedule, WEIGHT_SCHEDULES)
    snrs = sigmas**-2
    return {"snr": lambda: snrs, "snr+1": lambda: snrs + 1, "karras": lambda: snrs + 1.0 / sigma_data**2,
            "truncated-snr": lambda: torch.clamp(snrs, min=1.0), "uniform": lambda: torch.ones_like(snrs)}[weight_schedule]()


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=list(range(1, x.ndim)))


def distance(a: torch.Tensor, b: torch.Tensor, loss_norm: str) -> torch.Tensor:
    """Per-sample d(a, b) ``[N]``; "pseudo-huber" is iCT's √(‖a − b‖² + c²) − c with c = 0.00054·√(C·H·W) (Song &
    Dhariwal 2023, §3.3)."""
    check_choice("loss_norm", loss_norm, LOSS_NORMS)
    if loss_norm == "l1":
        return mean_flat(torch.abs(a - b))
    if loss_norm == "pseudo-huber":
        c = 0.00054 * a[0].numel() ** 0.5
        return torch.sqrt(((a - b) ** 2).flatten(1).sum(dim=1) + c**2) - c
    if loss_norm == "l2-32":
        a, b = (F.interpolate(x, size=32, mode="bilinear") for x in (a, b))
    return mean_flat((a - b) ** 2)


def edm_loss(network: Network, denoiser: KarrasDiffusionScheduler, x_start: torch.Tensor, sigmas: torch.Tensor,
             weight_schedule: str = "karras", noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """EDM denoising at the given ``sigmas`` ``[N]``: ``loss`` = ``mse`` = mean λ(σ)·(D − x₀)², ``xs_mse`` unweighted."""
    noise = torch.randn(x_start.shape, generator=generator, device=x_start.device) if noise is None else noise
    denoised = denoiser.denoise(network, x_start + noise * as_batch(sigmas, x_start), sigmas)
    weights = as_batch(loss_weights(weight_schedule, sigmas, denoiser.config.sigma_data), x_start)
    mse = mean_flat(weights * (denoised - x_start) ** 2)
    return {"loss": mse, "mse": mse, "xs_mse": mean_flat((denoised - x_start) ** 2)}


def ode_step(x: torch.Tensor, sigma: torch.Tensor, next_sigma: torch.Tensor, denoised: Callable, heun: bool):
    """One step of dx/dσ = (x − D(x; σ))/σ from σ to next_σ: Euler, or Heun (Euler, then the trapezoid)."""
    d = (x - denoised(x, sigma)) / as_batch(sigma, x)
    stepped = x + d * as_batch(next_sigma - sigma, x)
    if not heun:
        return stepped
    next_d = (stepped - denoised(stepped, next_sigma)) / as_batch(next_sigma, x)
    return x + (d + next_d) * as_batch((next_sigma - sigma) / 2, x)


def consistency_loss(
    network: Network,
    target_network: Network,
    denoiser: KarrasDiffusionScheduler,
    x_start: torch.Tensor,
    num_scales: int,
    teacher: tuple[Network, KarrasDiffusionScheduler] | None = None,
    weight_schedule: str = "uniform",
    loss_norm: str = "l2",
    generator: torch.Generator | None = None,
    index_distribution: str = "uniform",
) -> dict[str, torch.Tensor]:
    """Consistency distillation (``teacher`` = (network, its denoiser): a Heun step of the teacher's ODE) or
    consistency training (no teacher: an Euler step with x₀ as the denoiser), N = ``num_scales`` grid points.
    Returns ``loss`` ``[B]`` = λ(σ_n)·d(f_θ, f_θ⁻) and the drawn grid ``indices``. iCT's improvements (Song &
    Dhariwal 2023) as options: ``index_distribution="lognormal"``, ``loss_norm="pseudo-huber"``,
    ``weight_schedule="ict"`` (λ = 1/(σ_n − σ_{n+1}))."""
    check_number("num_scales", num_scales, minimum=2, integer=True)
    check_choice("index_distribution", index_distribution, INDEX_DISTRIBUTIONS)
    noise = torch.randn(x_start.shape, generator=generator, device=x_start.device)
    if index_distribution == "uniform":
        indices = torch.randint(0, num_scales - 1, (x_start.shape[0],), generator=generator, device=x_start.device)
    else:
        probabilities = lognormal_index_probabilities(denoiser, num_scales).to(x_start.device)
        indices = torch.multinomial(probabilities, x_start.shape[0], replacement=True, generator=generator)
    sigma = denoiser.level(indices / (num_scales - 1))
    next_sigma = denoiser.level((indices + 1) / (num_scales - 1))
    x_t = x_start + noise * as_batch(sigma, x_start)
    dropout_state = torch.get_rng_state()
    online = denoiser.denoise(network, x_t, sigma)
    with torch.no_grad():
        if teacher is None:
            x_next = ode_step(x_t, sigma, next_sigma, lambda x, s: x_start, heun=False)
        else:
            teacher_network, teacher_denoiser = teacher
            x_next = ode_step(x_t, sigma, next_sigma, lambda x, s: teacher_denoiser.denoise(teacher_network, x, s),
                              heun=True)
        torch.set_rng_state(dropout_state)
        target = denoiser.denoise(target_network, x_next, next_sigma)
    if weight_schedule == "ict":  # iCT: λ(σ_n) = 1 / (σ_n − σ_{n+1}), the step the target is taken over
        weights = 1 / (sigma - next_sigma)
    else:
        weights = loss_weights(weight_schedule, sigma, denoiser.config.sigma_data)
    return {"loss": distance(online, target.detach(), loss_norm) * weights, "indices": indices}


def lognormal_index_probabilities(denoiser: KarrasDiffusionScheduler, num_scales: int, p_mean: float = -1.1,
                                  p_std: float = 2.0) -> torch.Tensor:
    """iCT's discretised lognormal over the N − 1 grid intervals (Song & Dhariwal 2023, §3.5): the interval from
    σ_n down to σ_{n+1} is drawn with probability ∝ erf((log σ_n − P_mean)/(√2 P_std)) − erf((log σ_{n+1} − P_mean)/
    (√2 P_std)) (float64)."""
    positions = torch.arange(num_scales, dtype=torch.float64) / (num_scales - 1)
    config = denoiser.config
    max_inv_rho, min_inv_rho = config.sigma_max ** (1 / config.rho), config.sigma_min ** (1 / config.rho)
    log_sigmas = ((max_inv_rho + positions * (min_inv_rho - max_inv_rho)) ** config.rho).log()
    cdf = torch.erf((log_sigmas - p_mean) / (2**0.5 * p_std))
    mass = cdf[:-1] - cdf[1:]
    return mass / mass.sum()


def progressive_distillation_loss(
    network: Network,
    denoiser: KarrasDiffusionScheduler,
    teacher_network: Network,
    teacher_denoiser: KarrasDiffusionScheduler,
    x_start: torch.Tensor,
    num_scales: int,
    weight_schedule: str = "uniform",
    loss_norm: str = "l2",
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The reference's EDM-framework progressive distillation on a grid of N = ``num_scales`` student steps: the
    student's D(x_{σ_n}; σ_n) against the denoiser that reaches the teacher's two Euler steps in one. Returns
    ``loss`` ``[B]`` and the drawn grid ``indices``."""
    check_number("num_scales", num_scales, minimum=1, integer=True)
    noise = torch.randn(x_start.shape, generator=generator, device=x_start.device)
    indices = torch.randint(0, num_scales, (x_start.shape[0],), generator=generator, device=x_start.device)
    sigma, half, next_sigma = (denoiser.level((indices + offset) / num_scales) for offset in (0, 0.5, 1))
    x_t = x_start + noise * as_batch(sigma, x_start)
    student = denoiser.denoise(network, x_t, sigma)
    with torch.no_grad():
        teacher = lambda x, s: teacher_denoiser.denoise(teacher_network, x, s)  # noqa: E731
        x_half = ode_step(x_t, sigma, half, teacher, heun=False)
        x_next = ode_step(x_half, half, next_sigma, teacher, heun=False)
        target = x_t - as_batch(sigma, x_t) * (x_next - x_t) / as_batch(next_sigma - sigma, x_t)
    weights = loss_weights(weight_schedule, sigma, denoiser.config.sigma_data)
    return {"loss": distance(student, target, loss_norm) * weights, "indices": indices}
