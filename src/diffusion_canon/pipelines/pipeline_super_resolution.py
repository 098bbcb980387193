"""One super-resolution stage of a cascade (Ho et al. 2021): low-resolution images (+ class labels) → high resolution.

The stage samples p_θ(x_0 | z, y) with the ADM sampler (ancestral or DDIM steps on any respacing; classifier-free
guidance when the U-Net has a null class). The conditioning z may be augmented at inference exactly as in training —
blurred (σ, kernel size), then noised to level s through the forward process, with s given to the network — but
only when asked: by default it is used as is (level 0).

RNG contract: with one ``torch.Generator`` the stage draws, in order, the augmentation noise (only when
``noise_level`` is set), the initial noise x_T, then each stochastic step's noise, each of the sample's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.image_processor import VaeImageProcessor

from ..models.sr_unet import SuperResolutionUNet2DModel
from ..schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler  # noqa: F401 (component loaders, see hub.py)
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from ..augmentation import (
    gaussian_blur,
    gaussian_kernel,
    levels_tensor,
    noise_conditioning,
    truncated_timesteps,
)
from ..checks import check_augmentation, check_count, check_flag, checked_step
from .pipeline_adm import OUTPUT_TYPES, ADMPipeline, ClassLabels, classifier_free_guidance

LowResImages = PIL.Image.Image | Sequence[PIL.Image.Image] | np.ndarray | torch.Tensor
StepCallback = Callable[[DiffusionPipeline, int, torch.Tensor, dict[str, Any]], dict[str, Any]]


def images_to_model_input(images: LowResImages, channels: int, size: int | None, name: str = "low_res") -> torch.Tensor:
    """PIL image(s), NHWC / HWC numpy or NCHW / CHW torch in [0, 1] → ``[N, C, h, w]`` float32 in [−1, 1].

    ``ValueError`` (naming ``name``) for a wrong channel count, a side other than ``size`` (when given), non-square
    images, or values outside [0, 1]."""
    if not isinstance(images, (PIL.Image.Image, np.ndarray, torch.Tensor)) and isinstance(images, Iterable):
        images = list(images)  # any sequence of PIL images (a list, a datasets column …)
        if not images or not all(isinstance(image, PIL.Image.Image) for image in images):
            raise TypeError(f"{name} as a sequence must hold PIL images, got {[type(i).__name__ for i in images[:3]]}")
    if isinstance(images, (PIL.Image.Image, list)):
        pils = [images] if isinstance(images, PIL.Image.Image) else images
        tensor = VaeImageProcessor.numpy_to_pt(VaeImageProcessor.pil_to_numpy([im.convert("RGB") if channels == 3 else im for im in pils]))
    elif isinstance(images, np.ndarray):
        array = images[None] if images.ndim == 3 else images
        if array.ndim != 4:
            raise ValueError(f"{name} as a numpy array must be HWC or NHWC, got shape {images.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(0, 3, 1, 2)
    elif isinstance(images, torch.Tensor):
        tensor = images[None] if images.ndim == 3 else images
        if tensor.ndim != 4:
            raise ValueError(f"{name} as a tensor must be CHW or NCHW, got shape {tuple(images.shape)}")
    else:
        raise TypeError(f"{name} must be PIL image(s), a numpy array or a torch tensor, got {type(images).__name__}")
    tensor = tensor.float()
    if tensor.shape[1] != channels:
        raise ValueError(f"{name} has {tensor.shape[1]} channels, this stage expects {channels}")
    h, w = tensor.shape[-2:]
    if h != w or (size is not None and h != size):
        raise ValueError(f"{name} images are {h}x{w}, this stage expects {size}x{size}" if size else
                         f"{name} images must be square, got {h}x{w}")
    if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
        raise ValueError(f"{name} values must lie in [0, 1], got [{tensor.min():.3g}, {tensor.max():.3g}]")
    return tensor * 2 - 1


def reverse_process(
    pipeline: DiffusionPipeline,
    scheduler: ImprovedDiffusionScheduler,
    latents: torch.Tensor,
    predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    generator: torch.Generator | None = None,
    step_kwargs: dict[str, Any] | None = None,
    stop_at: int | None = None,
    callback_on_step_end: StepCallback | None = None,
    callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
) -> torch.Tensor:
    """Run ``scheduler.step`` over ``scheduler.timesteps`` (set beforehand) from ``latents``.

    ``predict(x_t [N, C, H, W], model_timestep [N]) → model output``. With ``stop_at=s`` the schedule must end at s
    (see :func:`~diffusion_canon.augmentation.truncated_timesteps`) and the step *at* s is skipped, so the
    result is the sample z_s at marginal level s rather than x_0. One ``randn`` per stochastic step.
    """
    timesteps = scheduler.timesteps
    if stop_at is not None:
        if int(timesteps[-1]) != stop_at:
            raise ValueError(f"stop_at={stop_at} must be the schedule's last timestep, got {int(timesteps[-1])}")
        timesteps = timesteps[:-1]
    batch = latents.shape[0]
    for step, t in enumerate(pipeline.progress_bar(timesteps)):
        model_output = predict(latents, scheduler.model_timestep(t).to(latents.device).expand(batch))
        latents = checked_step(scheduler, step, "latents, the low-res input, guidance_scale, eta and noise_level",
                               model_output, t, latents, generator=generator, **(step_kwargs or {})).prev_sample
        if callback_on_step_end is not None:
            current = {"latents": latents}
            tensors = {name: current[name] for name in callback_on_step_end_tensor_inputs}
            latents = callback_on_step_end(pipeline, step, t, tensors).get("latents", latents)
    return latents


def prepare_schedule(
    pipeline: ADMPipeline,
    use_ddim: bool,
    num_inference_steps: int | None,
    timestep_respacing: str | None,
    stop_at: int | None = None,
) -> ImprovedDiffusionScheduler:
    """The pipeline's DDPM/DDIM scheduler with its inference schedule set; with ``stop_at=s`` the schedule is
    truncated at s (:func:`~diffusion_canon.augmentation.truncated_timesteps`)."""
    scheduler = pipeline.sampler(use_ddim)
    scheduler.set_timesteps(num_inference_steps=num_inference_steps, timestep_respacing=timestep_respacing)
    if stop_at is not None:
        scheduler.set_timesteps(timesteps=truncated_timesteps(scheduler.timesteps, stop_at))
    return scheduler


def postprocess(samples: torch.Tensor, output_type: str) -> torch.Tensor | np.ndarray | list[PIL.Image.Image]:
    """Samples in [−1, 1] → "pil" / "np" (NHWC in [0, 1]) / "pt" (NCHW in [0, 1]); "latent" returns them as is."""
    return VaeImageProcessor(do_resize=False).postprocess(samples, output_type=output_type)


class SuperResolutionPipeline(ADMPipeline):
    r"""Super-resolution sampling with a :class:`~diffusion_canon.models.sr_unet.SuperResolutionUNet2DModel`.

    Components:
        unet: the SR U-Net (its ``low_res_sample_size`` and ``sample_size`` fix the input and output sides).
        scheduler: an ``ImprovedDDPMScheduler`` / ``ImprovedDDIMScheduler`` with the stage's training diffusion.

    Class labels, ``use_ddim`` / ``eta``, respacing and classifier-free guidance behave as in
    :class:`~diffusion_canon.pipelines.pipeline_adm.ADMPipeline`; classifier guidance is not offered.
    """

    classifier = None  # no classifier component; ADMPipeline's helpers read it
    _optional_components: list[str] = []

    def __init__(self, unet: SuperResolutionUNet2DModel, scheduler: ImprovedDiffusionScheduler):
        DiffusionPipeline.__init__(self)
        self.register_modules(unet=unet, scheduler=scheduler)

    # -- conditioning ----------------------------------------------------------------------------------------------

    def prepare_low_res(self, low_res: LowResImages) -> torch.Tensor:
        """The conditioning images as ``[N, C, h, w]`` in [−1, 1] on the execution device (sizes checked)."""
        config = self.unet.config
        tensor = images_to_model_input(low_res, config.low_res_channels, config.get("low_res_sample_size"))
        return tensor.to(self._execution_device)

    def augment(
        self,
        low_res: torch.Tensor,
        noise_level: int | None = None,
        blur_sigma: float | None = None,
        blur_kernel_size: int = 3,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference-time conditioning augmentation: Gaussian blur (σ = ``blur_sigma``), then z_s ~ q(z_s | z) at
        level s = ``noise_level`` on this stage's training diffusion (one ``randn``). ``None`` = none.

        Returns (conditioning ``[N, C, h, w]``, levels ``[N]`` int64 for the network: s, or 0 without noise)."""
        levels = levels_tensor(noise_level, low_res.shape[0], self.scheduler.config.num_train_timesteps, low_res.device)
        if blur_sigma is not None and blur_sigma != 0:
            gaussian_kernel(blur_sigma, blur_kernel_size)  # ValueError for σ < 0 or an even kernel
            low_res = gaussian_blur(low_res, float(blur_sigma), blur_kernel_size)
        if noise_level is not None:
            low_res = noise_conditioning(low_res, levels, self.scheduler, generator)
        return low_res, levels

    def predict(
        self,
        latents: torch.Tensor,
        model_timestep: torch.Tensor,
        labels: torch.Tensor | None,
        guidance_scale: float | None,
        low_res: torch.Tensor | None,
        augmentation_level: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The SR U-Net output for x_t given the (augmented) conditioning and its level, ``[N, out_channels, H, W]``
        float32; classifier-free guidance ε̃ = ε(∅) + w·(ε(y) − ε(∅)) as in ADMPipeline."""
        unet_pass = lambda y, x, t, low, level: self.unet(x, t, low, level, y).sample.float()  # noqa: E731
        return classifier_free_guidance(unet_pass, labels, self.unet.config.num_classes, guidance_scale, latents,
                                        model_timestep, low_res, augmentation_level)

    def sample(
        self,
        conditioning: torch.Tensor,
        levels: torch.Tensor,
        labels: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        use_ddim: bool = False,
        eta: float = 0.0,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        stop_at: int | None = None,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> torch.Tensor:
        """The reverse process given prepared conditioning ``[N, C, h, w]`` (model space, already augmented) and
        ``levels`` ``[N]``: draws x_T (unless ``latents``), steps, returns x_0 — or z_s with ``stop_at=s``, the schedule
        being truncated at s — as ``[N, C, H, W]`` in model space."""
        latents = self.prepare_latents(conditioning.shape[0], generator, latents, conditioning.device)
        scheduler = prepare_schedule(self, use_ddim, num_inference_steps, timestep_respacing, stop_at)
        unet_labels = labels if self.unet.config.num_classes is not None else None
        return reverse_process(
            self, scheduler, latents,
            lambda x, t: self.predict(x, t, unet_labels, guidance_scale, conditioning, levels),
            generator, {"eta": eta} if use_ddim else None, stop_at,
            callback_on_step_end, callback_on_step_end_tensor_inputs,
        )

    @torch.no_grad()
    def __call__(
        self,
        low_res: LowResImages,
        class_labels: ClassLabels | None = None,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        use_ddim: bool = False,
        eta: float = 0.0,
        noise_level: int | None = None,
        blur_sigma: float | None = None,
        blur_kernel_size: int = 3,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""Upsample ``low_res``.

        Args:
            low_res: the low-resolution images (PIL image(s), NHWC numpy or NCHW torch in [0, 1]) of side
                ``unet.config.low_res_sample_size``; their number is the batch size.
            class_labels: a class index or name, or one per image (class-conditional U-Nets only).
            num_inference_steps / timestep_respacing, use_ddim, eta, guidance_scale: as ``ADMPipeline``.
            noise_level: Gaussian conditioning augmentation at inference: z_s ~ q(z_s | z), s in [0, T), s given to the
                network. ``None`` (default) = no noise, level 0.
            blur_sigma, blur_kernel_size: Gaussian blur of the conditioning at inference (``None`` = none).
            generator, latents: the RNG (see the module docstring) and optional x_T ``[N, C, H, W]``.
            output_type: "pil", "np" (NHWC in [0, 1]), "pt" (NCHW in [0, 1]) or "latent" (x_0 in [−1, 1]).
            callback_on_step_end: ``callback(pipe, step, timestep, {"latents": ...}) -> dict`` after every step.
        """
        check_flag("return_dict", return_dict)
        check_augmentation(self.scheduler.config.num_train_timesteps, noise_level, blur_sigma, blur_kernel_size)
        conditioning = self.prepare_low_res(low_res)
        check_count("low_res (its number of images)", conditioning.shape[0])
        labels = self.prepare_class_labels(class_labels, conditioning.shape[0])
        if labels is not None and len(labels) != conditioning.shape[0]:
            raise ValueError(f"class_labels holds {len(labels)} labels for {conditioning.shape[0]} low_res images")
        self.check_inputs(labels, 0.0, guidance_scale, output_type, conditioning, callback_on_step_end_tensor_inputs,
                          conditioning.shape[0], use_ddim, eta, generator, latents, num_inference_steps,
                          callback_on_step_end)
        if labels is not None:
            labels = labels.to(conditioning.device)
        conditioning, levels = self.augment(conditioning, noise_level, blur_sigma, blur_kernel_size, generator)
        samples = self.sample(
            conditioning, levels, labels, num_inference_steps, timestep_respacing, use_ddim, eta, guidance_scale,
            generator, latents, callback_on_step_end=callback_on_step_end,
            callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
        )
        self.maybe_free_model_hooks()
        images = postprocess(samples, output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
