"""What the improved-DDPM and DDIM schedulers share: configuration, respacing, timestep bookkeeping and p_θ.

A scheduler holds two :class:`~diffusion_canon.schedulers.gaussian_diffusion.GaussianDiffusionSchedule` objects:
``train_schedule`` (all T training steps; losses and ``add_noise`` use it) and ``schedule`` (the respaced inference
schedule chosen by :meth:`set_timesteps`). Pipelines only ever see *training* timesteps (``scheduler.timesteps``);
the scheduler maps them to schedule indices (:meth:`index_for_timestep`) and to what the network is fed
(:meth:`model_timestep`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from ..checks import NonFiniteError, check_flag, check_generator, check_number, check_tensor_type
from .gaussian_diffusion import (
    PREDICTION_TYPES,
    VARIANCE_TYPES,
    GaussianDiffusionSchedule,
    ModelDistribution,
    check_choice,
    make_betas,
    space_timesteps,
)

IndexLike = torch.Tensor | int


# far above any published schedule (4000); the tables are float64 arrays of this length, so a typo cannot hang
MAX_TRAIN_TIMESTEPS = 100_000

def dynamic_threshold(sample: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Imagen dynamic thresholding (Saharia et al. 2022, §2.3): s = max(1, min(quantile_ratio |x̂_0|, max_value))
    per sample, then x̂_0 ← clip(x̂_0, −s, s) / s. ``sample``: ``(B, …)``."""
    flat = sample.reshape(sample.shape[0], -1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), ratio, dim=1).clamp(min=1.0, max=max_value).unsqueeze(1)
    return (torch.clamp(work, -s, s) / s).to(sample.dtype).reshape(sample.shape)


class ImprovedDiffusionScheduler(SchedulerMixin, ConfigMixin):
    """Base class of :class:`ImprovedDDPMScheduler` and :class:`ImprovedDDIMScheduler` (see those for ``step``).

    Args:
        num_train_timesteps: T, the length of the training diffusion.
        beta_schedule: "linear" (Ho et al., β from 1e-4·1000/T to 0.02·1000/T), "cosine" (ND Eq. 17, s = 0.008,
            β ≤ 0.999; "squaredcos_cap_v2" is diffusers' name for it).
        trained_betas: explicit β_1 … β_T (overrides ``beta_schedule``).
        variance_type: "fixed_small" (β̃_t), "fixed_large" (β_t), "learned" (network outputs log σ²),
            "learned_range" (ND Eq. 15). Learned types expect a ``2C``-channel model output.
        prediction_type: what the network predicts: "epsilon", "sample" (x_0) or "v_prediction".
        clip_sample, clip_sample_range: clip x̂_0 to ±range before forming the mean (the reference's
            ``clip_denoised``).
        thresholding, dynamic_thresholding_ratio, sample_max_value: Imagen dynamic thresholding of x̂_0 (takes
            precedence over ``clip_sample``).
        rescale_timesteps: feed the network t·1000/T (float) instead of t, as improved-diffusion checkpoints trained
            with ``--rescale_timesteps True`` expect.
    """

    _compatibles = ["DDPMScheduler", "DDIMScheduler"]
    order = 1

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        trained_betas: Sequence[float] | np.ndarray | None = None,
        variance_type: str = "fixed_small",
        prediction_type: str = "epsilon",
        clip_sample: bool = True,
        clip_sample_range: float = 1.0,
        thresholding: bool = False,
        dynamic_thresholding_ratio: float = 0.995,
        sample_max_value: float = 1.0,
        rescale_timesteps: bool = False,
    ):
        check_number("num_train_timesteps", num_train_timesteps, minimum=1, maximum=MAX_TRAIN_TIMESTEPS, integer=True)
        check_choice("variance_type", variance_type, VARIANCE_TYPES)
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        for name, flag in (("clip_sample", clip_sample), ("thresholding", thresholding),
                           ("rescale_timesteps", rescale_timesteps)):
            check_flag(name, flag)
        check_number("clip_sample_range", clip_sample_range, minimum=0)
        check_number("sample_max_value", sample_max_value, minimum=0)
        check_number("dynamic_thresholding_ratio", dynamic_thresholding_ratio, maximum=1)
        if not dynamic_thresholding_ratio > 0:
            raise ValueError(f"dynamic_thresholding_ratio={dynamic_thresholding_ratio!r} must lie in (0, 1]")
        self.train_schedule = GaussianDiffusionSchedule.from_betas(
            make_betas(beta_schedule, num_train_timesteps, trained_betas)
        )
        self.betas = torch.from_numpy(self.train_schedule.betas.copy()).float()
        self.alphas_cumprod = torch.from_numpy(self.train_schedule.alphas_cumprod.copy()).float()
        self.init_noise_sigma = 1.0
        self.set_timesteps()

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    # -- timesteps ---------------------------------------------------------------------------------------------

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        timestep_respacing: str | Sequence[int] | None = None,
        timesteps: Sequence[int] | torch.Tensor | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        """Choose the inference schedule S (at most one argument; none = all T steps).

        - ``num_inference_steps=N``: N steps evenly spaced over [0, T−1], starting at T−1 as diffusers users expect.
          For N ≥ 2 this is the reference's plain count ``"N"``; for N = 1 it is the single step T−1 (x_T → x̂_0),
          whereas the reference's ``"1"`` (``timestep_respacing="1"``) keeps only t = 0;
        - ``timestep_respacing``: an improved-diffusion string ("250", "10,20,30", "ddim50"; "" = all steps), with
          the reference's meaning;
        - ``timesteps``: explicit training timesteps, any order, no repeats.

        The respaced process has β'_i = 1 − ᾱ_{S_i}/ᾱ_{S_{i−1}} (ND §4, the reference's ``SpacedDiffusion``).
        Sets ``self.timesteps`` (LongTensor of training timesteps, descending) and ``self.schedule``.
        """
        num_train = self.config.num_train_timesteps
        if device is not None and not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
        if timestep_respacing is not None and not isinstance(timestep_respacing, (str, list, tuple)):
            raise TypeError("timestep_respacing must be a string such as '250', '10,20' or 'ddim50', or a list of "
                            f"section counts, got {type(timestep_respacing).__name__}")
        if timesteps is not None and not isinstance(timesteps, (list, tuple, torch.Tensor, np.ndarray)):
            raise TypeError(f"timesteps must be a sequence of training timesteps, got {type(timesteps).__name__}")
        given = [name for name, value in (("num_inference_steps", num_inference_steps),
                                          ("timestep_respacing", timestep_respacing),
                                          ("timesteps", timesteps)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"pass only one of num_inference_steps, timestep_respacing, timesteps; got {given}")
        if timesteps is not None:
            kept = self._check_explicit_timesteps(timesteps)
        elif timestep_respacing is not None and timestep_respacing != "":
            kept = space_timesteps(num_train, timestep_respacing)
        elif num_inference_steps is not None:
            if not isinstance(num_inference_steps, int) or isinstance(num_inference_steps, bool) or not (
                1 <= num_inference_steps <= num_train
            ):
                raise ValueError(
                    f"num_inference_steps={num_inference_steps!r} must be an integer in [1, {num_train}] "
                    "(num_train_timesteps)"
                )
            kept = [num_train - 1] if num_inference_steps == 1 else space_timesteps(num_train, num_inference_steps)
        else:
            kept = list(range(num_train))
        self.schedule = self.train_schedule.respace(kept)
        self.timestep_map = torch.tensor(kept, dtype=torch.long)
        try:
            self.timesteps = self.timestep_map.flip(0).to(device)
        except RuntimeError as error:  # an unknown device string
            raise ValueError(f"device={device!r} is not a device torch knows: {error}") from None
        self.num_inference_steps = len(kept)
        self._index_of = {t: i for i, t in enumerate(kept)}
        self._index_table = torch.full((num_train,), -1, dtype=torch.long)
        self._index_table[self.timestep_map] = torch.arange(len(kept))

    def _check_explicit_timesteps(self, timesteps) -> list[int]:
        if isinstance(timesteps, (torch.Tensor, np.ndarray)) and timesteps.ndim != 1:
            raise ValueError(f"timesteps must be one-dimensional, got shape {tuple(timesteps.shape)}")
        raw = timesteps.tolist() if isinstance(timesteps, (torch.Tensor, np.ndarray)) else list(timesteps)
        if not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in raw):
            raise TypeError(f"timesteps must hold integers, got {raw[:8]}")
        values = [int(t) for t in raw]
        num_train = self.config.num_train_timesteps
        if not values or len(set(values)) != len(values) or min(values) < 0 or max(values) >= num_train:
            raise ValueError(
                f"timesteps={values[:8]}{'…' if len(values) > 8 else ''} must be distinct integers in "
                f"[0, {num_train - 1}] (num_train_timesteps={num_train})"
            )
        return sorted(values)

    def index_for_timestep(self, timestep: IndexLike) -> IndexLike:
        """The schedule index (0 = last sampling step) of a training timestep in the current schedule.

        ``timestep``: int, 0-d tensor (→ int) or ``(B,)`` tensor (→ ``(B,)`` LongTensor)."""
        if isinstance(timestep, torch.Tensor) and timestep.ndim > 0:
            t = timestep.detach().to("cpu")
            in_range = (t >= 0) & (t < self.config.num_train_timesteps) & (t == t.round())
            index = self._index_table[t.long().clamp(0, self.config.num_train_timesteps - 1)]
            if not bool((in_range & (index >= 0)).all()):
                bad = t[~(in_range & (index >= 0))].tolist()
                raise ValueError(f"timestep {bad} not in the current schedule; allowed: {self.timesteps.tolist()}")
            return index.to(timestep.device)
        value = timestep.item() if isinstance(timestep, torch.Tensor) else timestep
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(
                value):
            raise TypeError(f"timestep must be a training timestep from self.timesteps (an int or a tensor), got "
                            f"{type(timestep).__name__} {value!r:.60}")
        index = self._index_of.get(int(value)) if float(value) == int(value) else None
        if index is None:
            raise ValueError(
                f"timestep={value!r} is not in the current schedule; allowed: the training timesteps "
                f"{self.timesteps.tolist()} (set with set_timesteps)"
            )
        return index

    def check_step(self, model_output: Any, sample: Any, generator: Any, return_dict: Any,
                   **like_sample: Any) -> None:
        """The arguments of ``step`` (types and shapes; finiteness is checked on the result, one reduction);
        ``like_sample``: optional tensors by name that must have ``sample``'s shape."""
        check_tensor_type("model_output", model_output)
        check_tensor_type("sample", sample)
        for name, tensor in like_sample.items():
            if tensor is None:
                continue
            check_tensor_type(name, tensor)
            if tensor.shape != sample.shape:
                raise ValueError(f"{name} has shape {tuple(tensor.shape)}, sample {tuple(sample.shape)}: they must "
                                 "match")
        if sample.ndim < 2 or model_output.shape[0] != sample.shape[0] or model_output.shape[2:] != sample.shape[2:]:
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} must share "
                             "the batch and spatial sizes")
        check_generator(generator, sample.shape[0])
        check_flag("return_dict", return_dict)

    @staticmethod
    def check_result(prev_sample: torch.Tensor) -> None:
        if not torch.isfinite(prev_sample).all():
            raise NonFiniteError("step produced non-finite values: model_output, sample or guidance_gradient hold NaN "
                             "or inf (or are too large)")

    def model_timestep(self, timestep: IndexLike) -> torch.Tensor:
        """What the network receives for a training timestep: t, or t·1000/T as float with ``rescale_timesteps``."""
        t = torch.as_tensor(timestep)
        if self.config.rescale_timesteps:
            return t.float() * (1000.0 / self.config.num_train_timesteps)
        return t

    def previous_timestep(self, timestep: IndexLike) -> IndexLike:
        """The training timestep the next ``step`` lands on (−1 after the last step): an int, or a tensor on the
        input's device for a tensor input (as diffusers' schedulers)."""
        index = self.index_for_timestep(timestep)
        previous = int(self.timestep_map[index - 1]) if index > 0 else -1
        if isinstance(timestep, torch.Tensor):
            return torch.tensor(previous, device=timestep.device)
        return previous

    def begin_step(self, sample: torch.Tensor, timestep: IndexLike, generator: Any = None) -> torch.Tensor:
        """The sample the network is evaluated at (the sampling loop's hook for samplers that perturb x first):
        unchanged here."""
        return sample

    def scale_model_input(self, sample: torch.Tensor, timestep: IndexLike | None = None) -> torch.Tensor:
        """Identity (diffusers pipeline interface): these schedulers need no input scaling."""
        return sample

    # -- the model's distribution on the inference schedule ----------------------------------------------------

    def process_original_sample(self, pred_original_sample: torch.Tensor) -> torch.Tensor:
        """x̂_0 after the configured dynamic thresholding or static clipping (identity when both are off)."""
        config = self.config
        if config.thresholding:
            return dynamic_threshold(pred_original_sample, config.dynamic_thresholding_ratio, config.sample_max_value)
        if config.clip_sample:
            return pred_original_sample.clamp(-config.clip_sample_range, config.clip_sample_range)
        return pred_original_sample

    def posterior_mean_variance(
        self, original_sample: torch.Tensor, sample: torch.Tensor, timestep: IndexLike
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_{t'} | x_t, x_0) on the inference schedule (t' = previous timestep): mean, variance, clipped
        log-variance, each ``(B, C, …)``. Ho Eq. 6–7 with the respaced β'."""
        return self.schedule.q_posterior_mean_variance(original_sample, sample, self.index_for_timestep(timestep))

    def p_mean_variance(
        self, model_output: torch.Tensor, sample: torch.Tensor, timestep: IndexLike, clip: bool = True
    ) -> ModelDistribution:
        """p_θ(x_{t'} | x_t) on the inference schedule: mean, variance, log-variance and x̂_0, each ``(B, C, …)``.

        ``model_output``: ``(B, C, …)`` or ``(B, 2C, …)`` for learned variances. Classifier guidance (Dhariwal &
        Nichol 2021, Alg. 1) shifts ``mean`` by ``variance · ∇ log p(y | x_t)``; ``step(guidance_gradient=…)``
        does that for you."""
        return self._distribution(model_output, sample, self.index_for_timestep(timestep), clip)

    def train_p_mean_variance(
        self, model_output: torch.Tensor, sample: torch.Tensor, timesteps: IndexLike, clip: bool = False
    ) -> ModelDistribution:
        """p_θ(x_{t−1} | x_t) on the full *training* schedule (what the losses use), ``timesteps`` ``(B,)`` or 0-d
        training timesteps; otherwise as :meth:`p_mean_variance`. ``clip`` defaults to off, as in training."""
        index = self.training_index(timesteps, sample)
        return self._distribution(model_output, sample, index, clip, self.train_schedule)

    def _distribution(self, model_output, sample, index, clip: bool = True, schedule=None) -> ModelDistribution:
        return (schedule or self.schedule).p_mean_variance(
            model_output,
            sample,
            index,
            variance_type=self.config.variance_type,
            prediction_type=self.config.prediction_type,
            process_start=self.process_original_sample if clip else None,
        )

    # -- the training process ----------------------------------------------------------------------------------

    def training_index(self, timesteps: IndexLike, like: torch.Tensor) -> torch.Tensor:
        """Training timesteps as a LongTensor on ``like``'s device (they index ``train_schedule`` directly),
        checked to be integers in [0, T − 1]."""
        t = torch.as_tensor(timesteps, device=like.device)
        num_train = self.config.num_train_timesteps
        if t.is_floating_point() or bool(((t < 0) | (t >= num_train)).any()):
            raise ValueError(f"timesteps must be integers in [0, {num_train - 1}] (num_train_timesteps); got {t}")
        return t.long()

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: IndexLike) -> torch.Tensor:
        """q_sample on the full training schedule: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (Ho Eq. 4); ``timesteps`` 0-d or
        ``(B,)``, independent of :meth:`set_timesteps`."""
        index = self.training_index(timesteps, original_samples)
        return self.train_schedule.q_sample(original_samples, index, noise).to(original_samples.dtype)

    def get_velocity(self, sample: torch.Tensor, noise: torch.Tensor, timesteps: IndexLike) -> torch.Tensor:
        """The v-prediction target √ᾱ_t ε − √(1 − ᾱ_t) x_0 on the training schedule (``sample`` is x_0)."""
        index = self.training_index(timesteps, sample)
        return self.train_schedule.velocity(sample, index, noise).to(sample.dtype)
