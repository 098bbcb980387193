"""Cascaded Diffusion Models (Ho et al. 2021): a class-conditional base model followed by super-resolution stages.

    p(x) = ∫ p_base(z⁽⁰⁾ | y) · Π_k p_k(z⁽ᵏ⁾ | z⁽ᵏ⁻¹⁾, s_k, y) dz      (z⁽ᴷ⁾ = x, the final image)

Each SR stage k is conditioned on the previous stage's output, optionally augmented at level s_k (§4.2):

* **non-truncated** (default when ``noise_level`` is set): the previous stage runs to its x_0, which is re-noised,
  z_s ~ q(z_s | x_0) on stage k's training diffusion;
* **truncated** (``truncate=True``): the previous stage's reverse process stops at step s — its inference schedule is
  the timesteps above s plus s itself (respaced β' over that schedule) and the step *at* s is skipped — so stage k
  conditions on the sample z_s of p_θ(z_s), with s embedded. This needs both stages to share one β schedule.
* ``noise_level=None`` (default): no augmentation, level 0. Blur (``blur_sigma``) can be asked for too.

RNG contract: with one ``torch.Generator`` the cascade draws, in order: the base's initial noise, its step noises,
then for each SR stage its augmentation noise (non-truncated with a noise level only), its initial noise and its
step noises — each of the sample's shape. So the base stage equals ``ADMPipeline`` and each SR stage equals
``SuperResolutionPipeline`` run on the previous output with the same generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.utils import BaseOutput, replace_example_docstring

from ..models.adm_unet import ADMUNet2DModel
from ..models.sr_unet import SuperResolutionUNet2DModel
from ..schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler  # noqa: F401 (component loaders, see hub.py)
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from ..augmentation import gaussian_blur, levels_tensor
from ..checks import check_augmentation, check_count, check_flag, check_number
from .hub import FolderPipelineMixin
from .pipeline_adm import ADMPipeline, ClassLabels, StageSampling
from .pipeline_super_resolution import SuperResolutionPipeline
from .sampling import SamplingMixin, StepCallback, check_output_type, postprocess

MAX_SR_STAGES = 3
EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> pipe = DiffusionPipeline.from_pretrained("pipelines/glyph-cascade-16-64", trust_remote_code=True)
        >>> out = pipe(class_labels=[3, 7], num_inference_steps=50, generator=torch.manual_seed(0))
        >>> out.images[0], out.stage_images[0][0]  # the 64x64 image and its 16x16 base sample
        ```
"""
Images = torch.Tensor | np.ndarray | list[PIL.Image.Image]


@dataclass
class CascadedPipelineOutput(BaseOutput):
    """``images``: the last stage's output. ``stage_images``: every stage's output, base first (same
    ``output_type``; a stage truncated for the next one shows its noisy z_s)."""

    images: Images
    stage_images: list[Images]


def per_stage(value: Any, count: int, name: str) -> list[Any]:
    """``value`` for each of ``count`` stages: a list/tuple must hold exactly ``count`` entries; anything else is
    repeated."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"{name} lists {len(value)} values, expected one per stage ({count})")
        return list(value)
    return [value] * count


class CascadedPipeline(SamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""A base :class:`ADMPipeline`-style model and up to three super-resolution stages, saved as one folder.

    Components:
        base_unet, base_scheduler: the base model (``ADMUNet2DModel``, class-conditional or not) and its diffusion.
        sr_unet_k, sr_scheduler_k (k = 1 … 3; 2 and 3 optional): the SR stages, each a
            ``SuperResolutionUNet2DModel`` with its own diffusion. Stage k's ``low_res_sample_size`` and channels must
            equal stage k−1's output (the base's ``sample_size``), else ``ValueError``.

    Sampling arguments that belong to every stage (``num_inference_steps``, ``timestep_respacing``, ``use_ddim``,
    ``eta``, ``guidance_scale``) take one value for all stages or a list with one entry per stage, base first.
    Augmentation arguments (``noise_level``, ``truncate``, ``blur_sigma``) take one value or a list per SR stage.

    Config: ``default_num_inference_steps`` (one value, or one per stage): the step count a stage uses when the call
    names no schedule for it (stored in model_index.json; ``None`` = all training steps).
    """

    model_cpu_offload_seq = "base_unet->sr_unet_1->sr_unet_2->sr_unet_3"
    _optional_components = ["sr_unet_2", "sr_scheduler_2", "sr_unet_3", "sr_scheduler_3"]

    def __init__(
        self,
        base_unet: ADMUNet2DModel,
        base_scheduler: ImprovedDiffusionScheduler,
        sr_unet_1: SuperResolutionUNet2DModel,
        sr_scheduler_1: ImprovedDiffusionScheduler,
        sr_unet_2: SuperResolutionUNet2DModel | None = None,
        sr_scheduler_2: ImprovedDiffusionScheduler | None = None,
        sr_unet_3: SuperResolutionUNet2DModel | None = None,
        sr_scheduler_3: ImprovedDiffusionScheduler | None = None,
        default_num_inference_steps: int | list[int] | None = None,
    ):
        super().__init__()
        stages = [(sr_unet_1, sr_scheduler_1), (sr_unet_2, sr_scheduler_2), (sr_unet_3, sr_scheduler_3)]
        for k, (unet, scheduler) in enumerate(stages, start=1):
            if (unet is None) != (scheduler is None):
                raise ValueError(f"sr_unet_{k} and sr_scheduler_{k} must be given together")
            if unet is None and any(u is not None for u, _ in stages[k:]):
                raise ValueError(f"SR stages must be filled in order: sr_unet_{k} is missing but a later stage is set")
        check_chain(base_unet, [unet for unet, _ in stages if unet is not None])
        self.register_modules(
            base_unet=base_unet, base_scheduler=base_scheduler,
            sr_unet_1=sr_unet_1, sr_scheduler_1=sr_scheduler_1, sr_unet_2=sr_unet_2, sr_scheduler_2=sr_scheduler_2,
            sr_unet_3=sr_unet_3, sr_scheduler_3=sr_scheduler_3,
        )
        count = 1 + sum(unet is not None for unet, _ in stages)
        defaults = per_stage(default_num_inference_steps, count, "default_num_inference_steps")
        for default in defaults:
            if default is not None:
                check_number("default_num_inference_steps", default, minimum=1, integer=True)
        self.register_to_config(default_num_inference_steps=default_num_inference_steps)

    # -- the stages as pipelines (sharing this pipeline's modules) ---------------------------------------------------

    @property
    def base(self) -> ADMPipeline:
        """The base stage as an ``ADMPipeline`` over this cascade's ``base_unet`` and ``base_scheduler``."""
        return self._view(ADMPipeline(unet=self.base_unet, scheduler=self.base_scheduler))

    @property
    def stages(self) -> list[SuperResolutionPipeline]:
        """The SR stages as ``SuperResolutionPipeline`` objects, lowest resolution first."""
        views = []
        for k in range(1, MAX_SR_STAGES + 1):
            unet = getattr(self, f"sr_unet_{k}", None)
            if unet is not None:
                views.append(self._view(SuperResolutionPipeline(unet=unet, scheduler=getattr(self, f"sr_scheduler_{k}"))))
        return views

    def _view(self, pipeline: DiffusionPipeline) -> DiffusionPipeline:
        pipeline.set_progress_bar_config(**getattr(self, "_progress_bar_config", {}))
        return pipeline

    # -- sampling ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        class_labels: ClassLabels | None = None,
        batch_size: int = 1,
        num_inference_steps: int | None | Sequence[int | None] = None,
        timestep_respacing: str | None | Sequence[str | None] = None,
        use_ddim: bool | Sequence[bool] = False,
        eta: float | Sequence[float] = 0.0,
        guidance_scale: float | None | Sequence[float | None] = None,
        noise_level: int | None | Sequence[int | None] = None,
        truncate: bool | Sequence[bool] = False,
        blur_sigma: float | None | Sequence[float | None] = None,
        blur_kernel_size: int = 3,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> CascadedPipelineOutput | tuple:
        r"""Sample through the whole cascade.

        Args:
            class_labels: class index or name, or one per image (as ``ADMPipeline``); passed to every class-conditional
                stage.
            batch_size: images to draw when ``class_labels`` is ``None`` or a single label.
            num_inference_steps, timestep_respacing, use_ddim, eta, guidance_scale: per stage (see the class docstring).
            noise_level: per SR stage, the conditioning augmentation level s in [0, T) (``None`` = none).
            truncate: per SR stage, truncated (True: the previous stage stops at s) or non-truncated augmentation.
            blur_sigma, blur_kernel_size: per SR stage Gaussian blur of the conditioning (``None`` = none).
            generator: the RNG (see the module docstring).
            output_type: "pil", "np", "pt" or "latent" (model space), for the final and the per-stage images.
            return_dict: return a :class:`CascadedPipelineOutput` (else a tuple).
            callback_on_step_end: called after every step of every stage, ``callback(stage_pipe, step, t, tensors)``;
                the stage pipeline's ``_guidance_scale`` / ``_interrupt`` act on that stage.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (``["latents"]``).

        Examples:

        Returns:
            :class:`CascadedPipelineOutput` (``images``, ``stage_images``), or the tuple ``(images, stage_images)``.
        """
        base, stages = self.base, self.stages
        count = 1 + len(stages)
        defaults = per_stage(self.config.get("default_num_inference_steps"), count, "default_num_inference_steps")
        sampling = [StageSampling(*values).or_default(default) for *values, default in zip(
            per_stage(num_inference_steps, count, "num_inference_steps"),
            per_stage(timestep_respacing, count, "timestep_respacing"),
            per_stage(use_ddim, count, "use_ddim"),
            per_stage(eta, count, "eta"),
            per_stage(guidance_scale, count, "guidance_scale"),
            defaults,
        )]
        levels = per_stage(noise_level, len(stages), "noise_level")
        truncated = per_stage(truncate, len(stages), "truncate")
        blurs = per_stage(blur_sigma, len(stages), "blur_sigma")
        check_count("batch_size", batch_size)
        check_flag("return_dict", return_dict)
        check_output_type(output_type)
        producers = [base, *stages]
        for producer, stage_sampling in zip(producers, sampling):
            stage_sampling.check(producer.scheduler.config.num_train_timesteps)
        for k, stage in enumerate(stages):
            check_augmentation(stage.scheduler.config.num_train_timesteps, levels[k], blurs[k], blur_kernel_size)
            check_flag("truncate", truncated[k])
            if truncated[k]:
                check_truncation(producers[k].scheduler, stage.scheduler, levels[k], k + 1)

        labels = base.prepare_class_labels(class_labels, batch_size)
        if labels is not None:
            batch_size = len(labels)
        callbacks = dict(
            callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        base.check_inputs(labels, 0.0, sampling[0], output_type, batch_size, generator, None, callbacks)
        if labels is not None:
            labels = labels.to(self._execution_device)

        # base stage: p(z⁽⁰⁾ | y), stopped at s_1 when stage 1 is truncated
        stop = levels[0] if stages and truncated[0] else None
        sample = base.sample(labels, batch_size, sampling[0], generator=generator, stop_at=stop, callbacks=callbacks)
        outputs = [sample]
        for k, stage in enumerate(stages):
            if truncated[k]:  # the previous stage's z_s, level s
                conditioning = sample if blurs[k] is None else gaussian_blur(sample, float(blurs[k]), blur_kernel_size)
                stage_levels = levels_tensor(levels[k], batch_size, stage.scheduler.config.num_train_timesteps,
                                             sample.device)
            else:
                conditioning, stage_levels = stage.augment(sample, levels[k], blurs[k], blur_kernel_size, generator)
            stop = levels[k + 1] if k + 1 < len(stages) and truncated[k + 1] else None
            sample = stage.sample(conditioning, stage_levels, labels, sampling[k + 1], generator, stop_at=stop,
                                  callbacks=callbacks)
            outputs.append(sample)
        self._num_timesteps = sum(producer.num_timesteps for producer in producers)

        self.maybe_free_model_hooks()
        stage_images = [postprocess(output, output_type) for output in outputs]
        if not return_dict:
            return (stage_images[-1], stage_images)
        return CascadedPipelineOutput(images=stage_images[-1], stage_images=stage_images)


def check_chain(base_unet: ADMUNet2DModel, sr_unets: Sequence[SuperResolutionUNet2DModel]) -> None:
    """``ValueError`` unless each SR stage takes the previous stage's output: side and channels."""
    if not sr_unets:
        raise ValueError("a cascade needs at least one super-resolution stage (sr_unet_1)")
    side, channels, name = base_unet.config.sample_size, base_unet.config.in_channels, "base_unet"
    for k, unet in enumerate(sr_unets, start=1):
        config = unet.config
        if not isinstance(unet, SuperResolutionUNet2DModel):
            raise TypeError(f"sr_unet_{k} must be a SuperResolutionUNet2DModel, got {type(unet).__name__}")
        expected = config.get("low_res_sample_size")
        if side is None or expected is None or expected != side or config.low_res_channels != channels:
            raise ValueError(
                f"stages do not chain: sr_unet_{k} takes {config.low_res_channels}x{expected}x{expected} "
                f"conditioning but {name} produces {channels}x{side}x{side} images (set sample_size / "
                "low_res_sample_size so each stage's input is the previous stage's output)"
            )
        side, channels, name = config.sample_size, config.in_channels, f"sr_unet_{k}"


def check_truncation(
    producer: ImprovedDiffusionScheduler, consumer: ImprovedDiffusionScheduler, noise_level: int | None, stage: int
) -> None:
    """Truncated augmentation hands the producer's z_s to the consumer as "level s of *its* diffusion": both must
    share ᾱ, and a level must be given."""
    if noise_level is None:
        raise ValueError(f"truncate=True for SR stage {stage} needs a noise_level (the step s the previous stage stops at)")
    if producer.alphas_cumprod.shape != consumer.alphas_cumprod.shape or not torch.allclose(
        producer.alphas_cumprod, consumer.alphas_cumprod
    ):
        raise ValueError(
            f"truncated augmentation for SR stage {stage} needs the previous stage and this stage to share one β "
            "schedule (same num_train_timesteps and ᾱ); use non-truncated augmentation (truncate=False) instead"
        )
