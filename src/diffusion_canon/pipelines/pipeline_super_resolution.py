"""One super-resolution stage of a cascade (Ho et al. 2021): low-resolution images (+ class labels) → high resolution.

The stage samples p_θ(x_0 | z, y) with the ADM sampler (ancestral or DDIM steps on any respacing; classifier-free
guidance when the U-Net has a null class). The conditioning z may be augmented at inference exactly as in training —
blurred (σ, kernel size), then noised to level s through the forward process, with s given to the network — but
only when asked: by default it is used as is (level 0).

RNG contract: with one ``torch.Generator`` the stage draws, in order, the augmentation noise (only when
``noise_level`` is set), the initial noise x_T, then each stochastic step's noise, each of the sample's shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils import replace_example_docstring

from ..augmentation import gaussian_blur, gaussian_kernel, levels_tensor, noise_conditioning
from ..checks import check_augmentation, check_count, check_flag, check_tensor
from ..models.sr_unet import SuperResolutionUNet2DModel
from ..schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler  # noqa: F401 (component loaders, see hub.py)
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from .hub import FolderPipelineMixin
from .pipeline_adm import ADMSamplingMixin, ClassLabels, StageSampling
from .sampling import Model, StepCallback, classifier_free_guidance, doubled_for, postprocess

LowResImages = PIL.Image.Image | Sequence[PIL.Image.Image] | np.ndarray | torch.Tensor

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> cascade = DiffusionPipeline.from_pretrained("pipelines/glyph-cascade-16-64", trust_remote_code=True)
        >>> stage = cascade.stages[0]  # a SuperResolutionPipeline sharing the cascade's modules
        >>> low_res = cascade.base(class_labels=[3], num_inference_steps=50, output_type="pt").images
        >>> images = stage(low_res, class_labels=[3], num_inference_steps=50, generator=torch.manual_seed(0)).images
        ```
"""


def images_to_model_input(images: LowResImages, channels: int, size: int | None, name: str = "low_res") -> torch.Tensor:
    """PIL image(s), NHWC / HWC numpy or NCHW / CHW torch in [0, 1], or a list of any one of these kinds (as diffusers'
    pipelines take them) → ``[N, C, h, w]`` float32 in [−1, 1].

    ``ValueError`` (naming ``name``) for a wrong channel count, a side other than ``size`` (when given), non-square
    images, or values outside [0, 1]."""
    if not isinstance(images, (PIL.Image.Image, np.ndarray, torch.Tensor)) and isinstance(images, Iterable):
        images = list(images)  # any sequence (a list, a datasets column …)
        kinds = {type(image) for image in images}
        if len(kinds) == 1 and kinds <= {np.ndarray, torch.Tensor}:  # one batch from per-image arrays or tensors
            join = np.concatenate if np.ndarray in kinds else torch.cat
            images = join([image[None] if image.ndim == 3 else image for image in images])
        elif not images or not all(isinstance(image, PIL.Image.Image) for image in images):
            raise TypeError(f"{name} as a sequence must hold PIL images, numpy arrays or tensors (one kind), got "
                            f"{[type(i).__name__ for i in images[:3]]}")
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


class SuperResolutionPipeline(ADMSamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""Super-resolution sampling with a :class:`~diffusion_canon.models.sr_unet.SuperResolutionUNet2DModel`.

    Components:
        unet: the SR U-Net (its ``low_res_sample_size`` and ``sample_size`` fix the input and output sides).
        scheduler: an ``ImprovedDDPMScheduler`` / ``ImprovedDDIMScheduler`` with the stage's training diffusion.

    Config: ``default_num_inference_steps`` as :class:`~diffusion_canon.pipelines.pipeline_adm.ADMPipeline`.

    Class labels, ``use_ddim`` / ``eta``, respacing and classifier-free guidance behave as in
    :class:`~diffusion_canon.pipelines.pipeline_adm.ADMPipeline`; classifier guidance is not offered.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: SuperResolutionUNet2DModel, scheduler: ImprovedDiffusionScheduler,
                 default_num_inference_steps: int | None = None):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.record_default_steps(default_num_inference_steps)

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

    # -- the model as a function ------------------------------------------------------------------------------

    def model(self, labels: torch.Tensor | None, conditioning: torch.Tensor, levels: torch.Tensor) -> Model:
        """``(x_t, model_timestep) -> SR U-Net output`` float32 given the (augmented) conditioning and its level, with
        classifier-free guidance as in :meth:`ADMPipeline.model`."""
        labels = self.unet_labels(labels)

        def unet(x: torch.Tensor, model_timestep: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            low_res, level = doubled_for(keep, conditioning, levels)
            return self.unet(x, model_timestep, low_res, level, self.labels_under_guidance(labels, keep)).sample.float()

        return classifier_free_guidance(unet, self, channels=self.unet.config.in_channels)

    def sample(
        self,
        conditioning: torch.Tensor,
        levels: torch.Tensor,
        labels: torch.Tensor | None,
        sampling: StageSampling,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        stop_at: int | None = None,
        callbacks: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The reverse process given prepared conditioning ``[N, C, h, w]`` (model space, already augmented) and
        ``levels`` ``[N]`` → x_0 — or z_s with ``stop_at=s``, the schedule being truncated at s — as ``[N, C, H, W]``
        in model space."""
        self.begin_sampling(sampling.guidance_scale)
        return self.reverse_process(self.model(labels, conditioning, levels), conditioning.shape[0], sampling,
                                    conditioning.device, generator, latents, stop_at, callbacks,
                                    causes="latents, the low-res input, guidance_scale, eta and noise_level")

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        low_res: LowResImages,
        class_labels: ClassLabels | None = None,
        num_images_per_prompt: int = 1,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        use_ddim: bool = False,
        eta: float = 0.0,
        noise_level: int | None = None,
        blur_sigma: float | None = None,
        blur_kernel_size: int = 3,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""Upsample ``low_res``.

        Args:
            low_res: the low-resolution images (PIL image(s), NHWC numpy or NCHW torch in [0, 1]) of side
                ``unet.config.low_res_sample_size``.
            class_labels: a class index or name, or one per input image (class-conditional U-Nets only).
            num_images_per_prompt: upsamplings per input image (image-major); the batch is their product.
            num_inference_steps, timestep_respacing, use_ddim, eta, guidance_scale: as ``ADMPipeline``.
            noise_level: Gaussian conditioning augmentation at inference: z_s ~ q(z_s | z), s in [0, T), s given to the
                network. ``None`` (default) = no noise, level 0.
            blur_sigma, blur_kernel_size: Gaussian blur of the conditioning at inference (``None`` = none).
            generator, latents: the RNG (see the module docstring) and optional x_T ``[N, C, H, W]``.
            output_type: "pil", "np" (NHWC in [0, 1]), "pt" (NCHW in [0, 1]) or "latent" (x_0 in [−1, 1]).
            return_dict: return an ``ImagePipelineOutput`` (else a tuple).
            callback_on_step_end, callback_on_step_end_tensor_inputs: as ``ADMPipeline``.

        Examples:

        Returns:
            ``ImagePipelineOutput`` with ``images`` in ``output_type`` (or the tuple ``(images,)``).
        """
        check_flag("return_dict", return_dict)
        check_count("num_images_per_prompt", num_images_per_prompt)
        check_augmentation(self.scheduler.config.num_train_timesteps, noise_level, blur_sigma, blur_kernel_size)
        conditioning = self.prepare_low_res(low_res)
        check_tensor("low_res", conditioning, ndim=4)
        check_count("low_res (its number of images) × num_images_per_prompt", conditioning.shape[0] *
                    num_images_per_prompt)
        labels = self.prepare_class_labels(class_labels, conditioning.shape[0])
        if labels is not None and len(labels) != conditioning.shape[0]:
            raise ValueError(f"class_labels holds {len(labels)} labels for {conditioning.shape[0]} low_res images")
        conditioning = conditioning.repeat_interleave(num_images_per_prompt, dim=0)
        labels = None if labels is None else labels.repeat_interleave(num_images_per_prompt, dim=0)
        sampling = StageSampling(num_inference_steps, timestep_respacing, use_ddim, eta, guidance_scale).or_default(
            self.default_sampling)
        callbacks = dict(callback_on_step_end=callback_on_step_end,
                         callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        self.check_sampling_inputs(labels, sampling, output_type, conditioning.shape[0], generator, latents, callbacks)
        if labels is not None:
            labels = labels.to(conditioning.device)
        conditioning, levels = self.augment(conditioning, noise_level, blur_sigma, blur_kernel_size, generator)
        samples = self.sample(conditioning, levels, labels, sampling, generator, latents, callbacks=callbacks)
        self.maybe_free_model_hooks()
        images = postprocess(samples, output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
