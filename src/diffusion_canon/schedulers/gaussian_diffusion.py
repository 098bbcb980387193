"""The Gaussian diffusion process of Ho et al. (2020) and Nichol & Dhariwal (2021), as one immutable object.

A :class:`GaussianDiffusionSchedule` is built from a β schedule (float64, like the reference code) and holds every
derived quantity: ᾱ, the posterior q(x_{t-1} | x_t, x_0) coefficients, the fixed reverse variances. Its methods
take *schedule indices* (0 … len-1) and implement the forward process, the posterior, and the reverse process
p(x_{t-1} | x_t) given a network output. The same class serves the full training schedule and any respaced
inference schedule (:meth:`GaussianDiffusionSchedule.respace`), so sampling and losses share one set of equations.

Coefficients are computed in float64 and gathered as float32 before they touch a tensor, exactly as
improved-diffusion's ``_extract_into_tensor`` does; this is what makes fp32 results agree with the reference to ~1e-7.

Equation numbers: "Ho" = Ho, Jain & Abbeel 2020 (arXiv:2006.11239); "ND" = Nichol & Dhariwal 2021
(arXiv:2102.09672); "Song" = Song, Meng & Ermon 2021, DDIM (arXiv:2010.02502).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_choice  # noqa: F401 (re-exported: the losses and the schedulers check choices with it)

BETA_SCHEDULES = ("linear", "cosine", "squaredcos_cap_v2")
VARIANCE_TYPES = ("fixed_small", "fixed_large", "learned", "learned_range")
PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


# --------------------------------------------------------------------------------------------------------------
# β schedules
# --------------------------------------------------------------------------------------------------------------


def linear_betas(num_timesteps: int) -> np.ndarray:
    """Ho et al.'s linear schedule, β from 1e-4 to 0.02 at T = 1000, scaled by 1000/T so that any T describes the
    same continuous process (improved-diffusion ``get_named_beta_schedule("linear")``). Shape ``(T,)`` float64."""
    scale = 1000.0 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def cosine_alpha_bar(t: np.ndarray | float, s: float = 0.008) -> np.ndarray | float:
    """ND Eq. 17: ᾱ(t) = f(t)/f(0) with f(t) = cos²((t + s)/(1 + s) · π/2), t ∈ [0, 1] (f(0) cancels in ratios)."""
    return np.cos((np.asarray(t, dtype=np.float64) + s) / (1.0 + s) * math.pi / 2) ** 2


def cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """ND Eq. 17 discretised: β_t = min(1 − ᾱ(t/T)/ᾱ((t−1)/T), 0.999). Shape ``(T,)`` float64."""
    steps = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    alpha_bar = cosine_alpha_bar(steps)
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


_BETA_SCHEDULE_FNS: dict[str, Callable[[int], np.ndarray]] = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "squaredcos_cap_v2": cosine_betas,  # diffusers' name for the same schedule
}


def make_betas(beta_schedule: str, num_timesteps: int, trained_betas: Sequence[float] | None = None) -> np.ndarray:
    """β_1 … β_T as float64: ``trained_betas`` when given, else the named schedule."""
    if not isinstance(num_timesteps, int) or isinstance(num_timesteps, bool) or num_timesteps < 1:
        raise ValueError(f"num_train_timesteps={num_timesteps!r} must be a positive integer")
    if trained_betas is not None:
        try:
            betas = np.asarray(trained_betas, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"trained_betas must be a sequence of numbers, got {type(trained_betas).__name__}") from None
        if betas.shape != (num_timesteps,):
            raise ValueError(
                f"trained_betas has shape {betas.shape}; expected ({num_timesteps},) = (num_train_timesteps,)"
            )
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError(f"trained_betas must lie in (0, 1]; got min {betas.min():g}, max {betas.max():g}")
        return betas
    check_choice("beta_schedule", beta_schedule, BETA_SCHEDULES)
    betas = _BETA_SCHEDULE_FNS[beta_schedule](num_timesteps)
    if betas.max() >= 1.0:  # the scaled linear schedule reaches β = 0.02·1000/T ≥ 1 for T ≤ 20: ᾱ_T = 0
        raise ValueError(
            f"beta_schedule={beta_schedule!r} with num_train_timesteps={num_timesteps} reaches β = {betas.max():g} "
            ">= 1; use num_train_timesteps > 20 or beta_schedule='cosine'"
        )
    return betas


# --------------------------------------------------------------------------------------------------------------
# Respacing (ND §4: sample with any subsequence S of the training timesteps)
# --------------------------------------------------------------------------------------------------------------


def space_timesteps(num_timesteps: int, spacing: str | int | Sequence[int]) -> list[int]:
    """The training timesteps kept by an improved-diffusion respacing string, ascending.

    - ``"250"`` or ``250``: that many steps, evenly spaced over [0, T−1] (both ends kept), rounded to integers;
    - ``"10,20,30"`` (or ``[10, 20, 30]``): T is cut into equal sections (the first ``T % k`` one step longer) and
      each section is spaced like the single-count case with its own count;
    - ``"ddimN"``: the DDIM paper's fixed stride, ``range(0, T, k)`` for the smallest k giving exactly N steps.
    """
    text = spacing if isinstance(spacing, str) else None
    if text is not None and text.startswith("ddim"):
        return _ddim_spacing(num_timesteps, text)
    if isinstance(spacing, int) and not isinstance(spacing, bool):
        counts = [spacing]
    elif text is not None:
        if not re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)*", text):
            raise ValueError(
                f"timestep_respacing={spacing!r} is not a respacing string; allowed: a step count like '250', "
                "comma-separated section counts like '10,20,30', or 'ddimN' like 'ddim50'"
            )
        counts = [int(part) for part in text.split(",")]
    else:
        counts = [int(c) for c in spacing]
    if not counts or min(counts) < 1:
        raise ValueError(f"timestep_respacing={spacing!r}: every section count must be >= 1")
    if len(counts) > num_timesteps:
        raise ValueError(f"timestep_respacing={spacing!r} has more sections than num_train_timesteps={num_timesteps}")
    size_per, extra = divmod(num_timesteps, len(counts))
    steps: list[int] = []
    start = 0
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count > size:
            raise ValueError(
                f"timestep_respacing={spacing!r}: section {i} has {size} training steps, cannot take {count} of them"
            )
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        # Python's round (half to even) on an accumulated float, as the reference does, so the maps agree exactly.
        position = 0.0
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += size
    return sorted(set(steps))


def _ddim_spacing(num_timesteps: int, text: str) -> list[int]:
    digits = text[len("ddim") :]
    if not digits.isdigit() or int(digits) < 1:
        raise ValueError(f"timestep_respacing={text!r}: 'ddim' must be followed by a positive step count, e.g. 'ddim50'")
    desired = int(digits)
    if desired == num_timesteps:
        return list(range(num_timesteps))
    for stride in range(1, num_timesteps):
        if len(range(0, num_timesteps, stride)) == desired:
            return list(range(0, num_timesteps, stride))
    raise ValueError(
        f"timestep_respacing={text!r}: no integer stride gives exactly {desired} of num_train_timesteps={num_timesteps} "
        "steps; use a plain count such as " + repr(str(desired))
    )


# --------------------------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDistribution:
    """p_θ(x_{t-1} | x_t) = N(mean, variance) and the x_0 estimate it was built from; all of x_t's shape.

    ``variance`` is the schedule's table value for fixed variances (at t = 0 it is not exp(log_variance), whose
    log is clipped) and exp(log_variance) for learned ones, computed only when asked for."""

    mean: torch.Tensor
    log_variance: torch.Tensor
    pred_original_sample: torch.Tensor
    fixed_variance: torch.Tensor | None = None

    @property
    def variance(self) -> torch.Tensor:
        return self.fixed_variance if self.fixed_variance is not None else torch.exp(self.log_variance)


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float64)
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class GaussianDiffusionSchedule:
    """Every quantity of a discrete Gaussian diffusion, derived in float64 from β_1 … β_N (index i ↔ β_{i+1}).

    Build with :meth:`from_betas`. All tensor methods take ``index``: a 0-d or ``(B,)`` integer tensor (or int) of
    schedule indices, and tensors ``x`` of shape ``(B, C, ...)``; results have ``x``'s shape.
    """

    betas: np.ndarray
    alphas_cumprod: np.ndarray  # ᾱ_t = ∏ (1 − β_s)
    alphas_cumprod_prev: np.ndarray  # ᾱ_{t−1}, with ᾱ_0 = 1
    alphas_cumprod_next: np.ndarray  # ᾱ_{t+1}, with ᾱ_{N+1} = 0
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray  # β̃_t, Ho Eq. 7
    posterior_log_variance_clipped: np.ndarray  # log β̃_t with β̃_1 replaced by β̃_2 (β̃_1 = 0)
    posterior_mean_coef1: np.ndarray  # coefficient of x_0 in μ̃_t, Ho Eq. 7
    posterior_mean_coef2: np.ndarray  # coefficient of x_t in μ̃_t, Ho Eq. 7
    log_betas: np.ndarray
    fixed_large_variance: np.ndarray  # β_t, with β_1 replaced by β̃_2 for a better decoder likelihood (reference)
    fixed_large_log_variance: np.ndarray
    _tables: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_betas(cls, betas: Sequence[float] | np.ndarray) -> GaussianDiffusionSchedule:
        """Derive the schedule from β (shape ``(N,)``, 0 < β ≤ 1). Ho Eq. 4 and 7; float64 throughout."""
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or betas.size == 0:
            raise ValueError(f"betas must be a non-empty 1-D sequence; got shape {betas.shape}")
        if not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError(f"betas must lie in (0, 1]; got min {betas.min()}, max {betas.max()}")
        alphas = 1.0 - betas
        ac = np.cumprod(alphas)
        ac_prev = np.append(1.0, ac[:-1])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        # β̃_1 = 0, so its log is clipped to log β̃_2 (a length-1 schedule has only β̃_1: keep it, still finite-free).
        post_var_for_log = np.append(post_var[1], post_var[1:]) if len(betas) > 1 else post_var
        large = np.append(post_var[1], betas[1:]) if len(betas) > 1 else betas.copy()
        with np.errstate(divide="ignore"):
            arrays = dict(
                betas=betas,
                alphas_cumprod=ac,
                alphas_cumprod_prev=ac_prev,
                alphas_cumprod_next=np.append(ac[1:], 0.0),
                sqrt_alphas_cumprod=np.sqrt(ac),
                sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - ac),
                one_minus_alphas_cumprod=1.0 - ac,
                log_one_minus_alphas_cumprod=np.log(1.0 - ac),
                sqrt_recip_alphas_cumprod=np.sqrt(1.0 / ac),
                sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / ac - 1),
                posterior_variance=post_var,
                posterior_log_variance_clipped=np.log(post_var_for_log),
                posterior_mean_coef1=betas * np.sqrt(ac_prev) / (1.0 - ac),
                posterior_mean_coef2=(1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac),
                log_betas=np.log(betas),
                fixed_large_variance=large,
                fixed_large_log_variance=np.log(large),
            )
        return cls(**{name: _readonly(value) for name, value in arrays.items()})

    def __len__(self) -> int:
        return len(self.betas)

    def respace(self, use_timesteps: Iterable[int]) -> GaussianDiffusionSchedule:
        """The schedule on the kept timesteps S_1 < … < S_n (ND §4): β'_i = 1 − ᾱ_{S_i} / ᾱ_{S_{i−1}}, ᾱ_{S_0} = 1.

        This keeps q(x_{S_i} | x_0) of the original process, so a model trained on it can sample on S."""
        kept = sorted(set(int(t) for t in use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= len(self):
            raise ValueError(f"use_timesteps must be a non-empty subset of [0, {len(self) - 1}]; got {kept[:5]}…")
        ac = self.alphas_cumprod[kept]
        return GaussianDiffusionSchedule.from_betas(1.0 - ac / np.append(1.0, ac[:-1]))

    # -- gathering ---------------------------------------------------------------------------------------------

    def table(self, name: str, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32):
        """The named float64 array as a tensor of ``dtype`` on ``device`` (cached; the cast happens before any
        arithmetic, as in the reference)."""
        key = (name, torch.device(device) if device is not None else torch.device("cpu"), dtype)
        cached = self._tables.get(key)
        if cached is None:
            cached = torch.tensor(getattr(self, name), dtype=torch.float64).to(dtype=dtype, device=key[1])
            self._tables[key] = cached
        return cached

    def extract(self, name: str, index: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``name[index]`` shaped to broadcast against ``like`` (``(B,1,…,1)`` for a ``(B,)`` index, 0-d for a
        scalar), float32 unless ``like`` is float64."""
        dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
        values = self.table(name, like.device, dtype)[_as_index(index, like.device)]
        if values.ndim == 1:
            values = values.view(-1, *([1] * (like.ndim - 1)))
        return values

    # -- forward process ---------------------------------------------------------------------------------------

    def q_mean_variance(self, x_start: torch.Tensor, index) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho Eq. 4): mean, variance, log-variance."""
        mean = self.extract("sqrt_alphas_cumprod", index, x_start) * x_start
        variance = self.extract("one_minus_alphas_cumprod", index, x_start).expand_as(x_start)
        log_variance = self.extract("log_one_minus_alphas_cumprod", index, x_start).expand_as(x_start)
        return mean, variance, log_variance

    def q_sample(self, x_start: torch.Tensor, index, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho Eq. 4 reparameterised)."""
        return (
            self.extract("sqrt_alphas_cumprod", index, x_start) * x_start
            + self.extract("sqrt_one_minus_alphas_cumprod", index, x_start) * noise
        )

    def velocity(self, x_start: torch.Tensor, index, noise: torch.Tensor) -> torch.Tensor:
        """v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans & Ho 2022, §4), the v-prediction target."""
        return (
            self.extract("sqrt_alphas_cumprod", index, x_start) * noise
            - self.extract("sqrt_one_minus_alphas_cumprod", index, x_start) * x_start
        )

    def q_posterior_mean_variance(
        self, x_start: torch.Tensor, x_t: torch.Tensor, index
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) (Ho Eq. 6–7): mean μ̃_t, variance β̃_t, clipped log β̃_t."""
        mean = (
            self.extract("posterior_mean_coef1", index, x_t) * x_start
            + self.extract("posterior_mean_coef2", index, x_t) * x_t
        )
        variance = self.extract("posterior_variance", index, x_t).expand_as(x_t)
        log_variance = self.extract("posterior_log_variance_clipped", index, x_t).expand_as(x_t)
        return mean, variance, log_variance

    # -- x_0 / ε / v conversions -------------------------------------------------------------------------------

    def predict_start_from_noise(self, x_t: torch.Tensor, index, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε (Ho Eq. 4 solved for x_0)."""
        return (
            self.extract("sqrt_recip_alphas_cumprod", index, x_t) * x_t
            - self.extract("sqrt_recipm1_alphas_cumprod", index, x_t) * eps
        )

    def predict_noise_from_start(self, x_t: torch.Tensor, index, x_start: torch.Tensor) -> torch.Tensor:
        """ε = (x_t/√ᾱ_t − x_0) / √(1/ᾱ_t − 1) (inverse of :meth:`predict_start_from_noise`)."""
        return (self.extract("sqrt_recip_alphas_cumprod", index, x_t) * x_t - x_start) / self.extract(
            "sqrt_recipm1_alphas_cumprod", index, x_t
        )

    def predict_start_from_velocity(self, x_t: torch.Tensor, index, v: torch.Tensor) -> torch.Tensor:
        """x_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v (Salimans & Ho 2022)."""
        return (
            self.extract("sqrt_alphas_cumprod", index, x_t) * x_t
            - self.extract("sqrt_one_minus_alphas_cumprod", index, x_t) * v
        )

    def predict_start(self, prediction_type: str, x_t: torch.Tensor, index, output: torch.Tensor) -> torch.Tensor:
        """x_0 from a network output of the given ``prediction_type`` ("epsilon", "sample", "v_prediction")."""
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        return _PREDICT_START[prediction_type](self, x_t, index, output)

    # -- reverse process ---------------------------------------------------------------------------------------

    def model_variance(
        self, variance_type: str, index, like: torch.Tensor, var_values: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ_θ(x_t, t) = σ_t² I as (variance, log-variance), each of ``like``'s shape.

        - "fixed_small": σ² = β̃_t; "fixed_large": σ² = β_t (Ho §3.2);
        - "learned": the network outputs log σ² directly (``var_values``);
        - "learned_range": ND Eq. 15, log σ² = u log β_t + (1 − u) log β̃_t with u = (v + 1)/2, v ∈ [−1, 1].
        """
        variance, log_variance = self._model_log_variance(variance_type, index, like, var_values)
        return (torch.exp(log_variance) if variance is None else variance), log_variance

    def _model_log_variance(self, variance_type, index, like, var_values):
        """(table variance or None for learned types, log-variance): the exp is left to whoever needs σ²."""
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        return _MODEL_VARIANCE[variance_type](self, index, like, var_values)

    def p_mean_variance(
        self,
        model_output: torch.Tensor,
        x_t: torch.Tensor,
        index,
        *,
        variance_type: str,
        prediction_type: str,
        process_start: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> ModelDistribution:
        """p_θ(x_{t−1} | x_t) = N(μ̃_t(x_t, x̂_0), Σ_θ) (Ho Eq. 1, 7, 11; ND Eq. 15).

        ``model_output``: ``(B, C, …)``, or ``(B, 2C, …)`` for learned variances (second half = variance values).
        ``process_start`` is applied to x̂_0 (clipping / thresholding) before the mean is formed from it."""
        mean_output, var_values = split_model_output(model_output, x_t, variance_type)
        variance, log_variance = self._model_log_variance(variance_type, index, x_t, var_values)
        pred_start = self.predict_start(prediction_type, x_t, index, mean_output)
        if process_start is not None:
            pred_start = process_start(pred_start)
        mean, _, _ = self.q_posterior_mean_variance(pred_start, x_t, index)
        return ModelDistribution(mean, log_variance, pred_start, variance)


def split_model_output(
    model_output: torch.Tensor, x_t: torch.Tensor, variance_type: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a ``(B, 2C, …)`` output into (mean part, variance values) for learned variances; else (output, None)."""
    learned = variance_type in ("learned", "learned_range")
    channels = x_t.shape[1]
    expected = 2 * channels if learned else channels
    if model_output.ndim != x_t.ndim or model_output.shape[1] != expected or model_output.shape[2:] != x_t.shape[2:]:
        raise ValueError(
            f"model_output has shape {tuple(model_output.shape)} but variance_type={variance_type!r} with a sample "
            f"of shape {tuple(x_t.shape)} needs {expected} channels ({'2C: mean and variance' if learned else 'C'})"
        )
    if not learned:
        return model_output, None
    mean_output, var_values = torch.split(model_output, channels, dim=1)
    return mean_output, var_values


def _fixed_variance(variance_name: str, log_name: str):
    def variance(schedule, index, like, var_values):
        return (
            schedule.extract(variance_name, index, like).expand_as(like),
            schedule.extract(log_name, index, like).expand_as(like),
        )

    return variance


def _learned_variance(schedule, index, like, var_values):
    return None, var_values


def _learned_range_variance(schedule, index, like, var_values):
    min_log = schedule.extract("posterior_log_variance_clipped", index, like)
    max_log = schedule.extract("log_betas", index, like)
    frac = (var_values + 1) / 2
    return None, frac * max_log + (1 - frac) * min_log


_MODEL_VARIANCE = {
    "fixed_small": _fixed_variance("posterior_variance", "posterior_log_variance_clipped"),
    "fixed_large": _fixed_variance("fixed_large_variance", "fixed_large_log_variance"),
    "learned": _learned_variance,
    "learned_range": _learned_range_variance,
}

_PREDICT_START = {
    "epsilon": GaussianDiffusionSchedule.predict_start_from_noise,
    "sample": lambda schedule, x_t, index, output: output,
    "v_prediction": GaussianDiffusionSchedule.predict_start_from_velocity,
}


def _as_index(index: torch.Tensor | int, device: torch.device) -> torch.Tensor | int:
    if isinstance(index, torch.Tensor):
        return index.to(device=device, dtype=torch.long)
    return int(index)
