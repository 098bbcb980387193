"""The sampling core every pipeline runs (k-diffusion's design: the model is a function, variants wrap it).

* A **model** is ``model(x_t, model_timestep) -> output``, ``x_t`` ``[N, ...]`` and ``model_timestep`` ``[N]``; the
  output is what the scheduler's ``step`` reads (ε, x̂_0 or v, plus a learned variance).
* A **conditioned model** takes a third argument ``keep`` (``[N]`` bool, or ``None`` for "every row conditioned"):
  rows whose ``keep`` is False see the model's null condition (a null class, a null embedding, null text tokens).
  :func:`classifier_free_guidance` turns one into a model.
* :func:`denoise` is the one loop: per timestep, the scheduler's ``begin_step`` (Karras' churn; the identity elsewhere), one
  model call on ``scheduler.scale_model_input`` at ``scheduler.model_timestep``, one ``scheduler.step``; the
  diffusers callback and interrupt conventions, and the pipeline's progress bar.
* :func:`postprocess` turns samples in [−1, 1] into the requested ``output_type``, by diffusers' image processor.

:class:`SamplingMixin` gives a pipeline diffusers' sampling properties (``guidance_scale``,
``do_classifier_free_guidance``, ``num_timesteps``, ``interrupt``), which the loop and the guidance wrapper read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import VaeImageProcessor

from ..checks import check_choice, checked_step

Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ConditionedModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
StepCallback = Callable[[DiffusionPipeline, int, torch.Tensor, dict[str, Any]], dict[str, Any]]
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


class SamplingMixin:
    """diffusers' sampling state on a pipeline: the guidance weight a callback may change between steps, the number
    of steps of the current run, and the flag that stops it."""

    _callback_tensor_inputs = ["latents"]
    _guidance_scale: float | None = None
    _num_timesteps: int = 0
    _interrupt: bool = False

    @property
    def guidance_scale(self) -> float | None:
        """The classifier-free guidance weight w of the current run (``None`` = off)."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current run mixes a conditional and an unconditional pass (w set and ≠ 1; w = 0 is the
        unconditional model alone, w < 1 moves towards it)."""
        return self._guidance_scale is not None and self._guidance_scale != 1.0

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the current (or last) run."""
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        """Set ``pipe._interrupt = True`` from a callback to skip the remaining steps."""
        return self._interrupt

    def begin_sampling(self, guidance_scale: float | None) -> None:
        self._guidance_scale = guidance_scale
        self._interrupt = False


def classifier_free_guidance(model: ConditionedModel, pipeline: SamplingMixin, channels: int | None = None) -> Model:
    """Ho & Salimans (2021): ε̃ = ε(x_t, ∅) + w·(ε(x_t, c) − ε(x_t, ∅)), in one pass over the batch [kept; dropped].

    ``w`` is read from ``pipeline.guidance_scale`` at every call (a step callback may change it). Without guidance
    the model runs once with every row conditioned. Only the first ``channels`` output channels are mixed (all when
    ``None``); the rest — a learned variance — come from the conditional half.
    """

    def guided(x: torch.Tensor, model_timestep: torch.Tensor) -> torch.Tensor:
        if not pipeline.do_classifier_free_guidance:
            return model(x, model_timestep, None)
        n = x.shape[0]
        keep = torch.arange(2 * n, device=x.device) < n
        conditional, unconditional = model(torch.cat([x, x]), torch.cat([model_timestep, model_timestep]), keep).chunk(2)
        c = conditional.shape[1] if channels is None else channels
        w = pipeline.guidance_scale
        mixed = unconditional[:, :c] + w * (conditional[:, :c] - unconditional[:, :c])
        return torch.cat([mixed, conditional[:, c:]], dim=1) if c < conditional.shape[1] else mixed

    return guided


def doubled_for(keep: torch.Tensor | None, *inputs: torch.Tensor | None) -> list[torch.Tensor | None]:
    """A conditioned model's own inputs for a call: under guidance (``keep`` given, the batch doubled) each batched
    tensor twice over; 0-d tensors and ``None`` pass through."""
    if keep is None:
        return list(inputs)
    return [x if x is None or x.ndim == 0 else torch.cat([x, x]) for x in inputs]


def denoise(
    pipeline: SamplingMixin,
    scheduler: Any,
    model: Model,
    latents: torch.Tensor,
    *,
    generator: torch.Generator | list[torch.Generator] | None = None,
    guidance_gradient: Model | None = None,
    step_kwargs: dict[str, Any] | None = None,
    stop_at: int | None = None,
    callback_on_step_end: StepCallback | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    causes: str = "latents",
) -> torch.Tensor:
    """Run ``scheduler.step`` over ``scheduler.timesteps`` (set beforehand) from ``latents``; returns the sample.

    Args:
        model: ``model(x_t, model_timestep [N]) -> output`` (wrap it in :func:`classifier_free_guidance` for CFG).
        generator: one ``randn`` of the sample's shape per stochastic step, in order.
        guidance_gradient: ``g(x_t, model_timestep)`` = s·∇ log p(y | x_t), handed to ``step`` (classifier guidance).
        step_kwargs: more ``step`` arguments (``eta``).
        stop_at: the schedule must end at s; the step *at* s is skipped, so the result is z_s at marginal level s
            rather than x_0 (truncated conditioning augmentation).
        callback_on_step_end: ``callback(pipeline, step, timestep, {"latents": ...}) -> dict`` after every step; a
            returned "latents" replaces the sample. ``pipeline._interrupt = True`` skips the remaining steps.
        causes: the pipeline arguments that scale the sample, named when a step turns non-finite.
    """
    if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
        callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs  # as diffusers' pipelines do
    timesteps = scheduler.timesteps
    if stop_at is not None:
        if int(timesteps[-1]) != stop_at:
            raise ValueError(f"stop_at={stop_at} must be the schedule's last timestep, got {int(timesteps[-1])}")
        timesteps = timesteps[:-1]
    pipeline._num_timesteps = len(timesteps)
    batch = latents.shape[0]
    for step, t in enumerate(pipeline.progress_bar(timesteps)):
        if pipeline.interrupt:
            continue
        latents = scheduler.begin_step(latents, t, generator)  # Karras' churn; the identity for the others
        model_timestep = scheduler.model_timestep(t).to(latents.device).expand(batch)
        output = model(scheduler.scale_model_input(latents, t), model_timestep)
        kwargs = dict(step_kwargs or {})
        if guidance_gradient is not None:
            kwargs["guidance_gradient"] = guidance_gradient(latents, model_timestep)
        latents = checked_step(scheduler, step, causes, output, t, latents, generator=generator, **kwargs).prev_sample
        if callback_on_step_end is not None:
            tensors = {name: latents for name in callback_on_step_end_tensor_inputs}
            latents = callback_on_step_end(pipeline, step, t, tensors).pop("latents", latents)
    return latents


def check_output_type(output_type: Any) -> None:
    """``output_type`` must be one :func:`postprocess` knows."""
    check_choice("output_type", output_type, OUTPUT_TYPES)


def postprocess(samples: torch.Tensor, output_type: str) -> Any:
    """Samples ``[N, C, H, W]`` in [−1, 1] → "pil", "np" (NHWC in [0, 1]), "pt" (NCHW in [0, 1]); "latent" returns
    them as they are."""
    return VaeImageProcessor(do_resize=False).postprocess(samples, output_type=output_type)
