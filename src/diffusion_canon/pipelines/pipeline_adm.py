"""ADM sampling (Dhariwal & Nichol 2021): ancestral or DDIM steps with classifier guidance and classifier-free guidance.

RNG contract: with one ``torch.Generator``, the initial noise is drawn first, then each stochastic step's noise, each
of the sample's shape, in sampling order — so a run equals guided-diffusion's ``p_sample_loop`` /
``ddim_sample_loop`` under ``torch.manual_seed`` of the same seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.utils.torch_utils import randn_tensor

from ..models.adm_classifier import ADMClassifierModel
from ..models.adm_unet import ADMUNet2DModel
from ..schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from ..checks import (
    check_callback, check_choice, check_count, checked_step, check_flag, check_generator, check_number,
    check_sampling, check_tensor,
)
from .hub import FolderPipelineMixin

ClassLabels = int | str | Sequence[int | str] | torch.Tensor
OUTPUT_TYPES = ("pil", "np", "pt", "latent")


def classifier_free_guidance(
    unet_pass: Callable[..., torch.Tensor], labels: torch.Tensor | None, null_label: int, guidance_scale: float | None,
    latents: torch.Tensor, *inputs: torch.Tensor | None,
) -> torch.Tensor:
    """Ho & Salimans (2021): ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) − ε(x_t, ∅)), in one U-Net pass over [conditional; null].

    ``unet_pass(labels, latents, *inputs)`` returns the U-Net output ``[N, C', H, W]`` (float32). Without guidance
    (scale ``None`` or 1, or no labels) it runs once as given. Otherwise ``latents`` and every batched input are
    doubled (0-d tensors and ``None`` pass through), the second half labelled ``null_label``; the first ``C``
    channels (those of ``latents``) are mixed and the rest (a learned variance, if any) come from the conditional half.
    """
    if guidance_scale is None or guidance_scale == 1.0 or labels is None:
        return unet_pass(labels, latents, *inputs)
    doubled = [x if x is None or x.ndim == 0 else torch.cat([x, x]) for x in (latents, *inputs)]
    output = unet_pass(torch.cat([labels, torch.full_like(labels, null_label)]), *doubled)
    conditional, unconditional = output.chunk(2)
    channels = latents.shape[1]
    eps = unconditional[:, :channels] + guidance_scale * (conditional[:, :channels] - unconditional[:, :channels])
    return torch.cat([eps, conditional[:, channels:]], dim=1)


class ADMPipeline(FolderPipelineMixin, DiffusionPipeline):
    r"""Class-conditional or unconditional ADM sampling.

    Components:
        unet: :class:`~diffusion_canon.models.ADMUNet2DModel` (ε and, for learned σ, the variance interpolation).
        scheduler: an :class:`~diffusion_canon.schedulers.ImprovedDDPMScheduler` (or DDIM) describing the training
            diffusion; ``use_ddim`` switches the sampler on the same configuration.
        classifier: optional :class:`~diffusion_canon.models.ADMClassifierModel` for classifier guidance.
    """

    model_cpu_offload_seq = "unet"
    _optional_components = ["classifier"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        unet: ADMUNet2DModel,
        scheduler: ImprovedDiffusionScheduler,
        classifier: ADMClassifierModel | None = None,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, classifier=classifier)

    # -- inputs --------------------------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str] | None:
        """Names of the class indices (from the U-Net config, else the classifier's), or ``None``."""
        for model in (self.unet, self.classifier):
            if model is not None and model.config.get("class_names"):
                return list(model.config.class_names)
        return None

    @property
    def num_classes(self) -> int | None:
        """Classes the labels index: the U-Net's, else the classifier's (unconditional U-Net guided by a classifier)."""
        if self.unet.config.num_classes is not None:
            return self.unet.config.num_classes
        return None if self.classifier is None else self.classifier.config.num_classes

    def class_index(self, label: int | str) -> int:
        """A class index from an int or a class name; ``ValueError`` when out of range or unknown."""
        num_classes = self.num_classes
        if isinstance(label, str):
            names = self.class_names
            if names is None or label not in names:
                known = "this model has no class names" if names is None else f"known names include {names[:10]}"
                raise ValueError(f"class_labels: unknown class name {label!r} ({known})")
            return names.index(label)
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
            raise TypeError(f"class_labels must hold ints or class names, got {type(label).__name__} {label!r}")
        if num_classes is None or not 0 <= int(label) < num_classes:
            allowed = "none (the pipeline has no classes)" if num_classes is None else f"0 … {num_classes - 1}"
            raise ValueError(f"class_labels: {int(label)} is out of range; allowed {allowed}")
        return int(label)

    def get_label_ids(self, label: str | Sequence[str]) -> list[int]:
        """Class name(s) → index(es), as diffusers' ``DiTPipeline.get_label_ids``."""
        return [self.class_index(name) for name in ([label] if isinstance(label, str) else label)]

    def prepare_class_labels(self, class_labels: ClassLabels | None, batch_size: int) -> torch.Tensor | None:
        """``[N]`` LongTensor of class indices (``None`` for unconditional sampling). A single label is repeated
        ``batch_size`` times; a sequence or tensor sets the batch size."""
        if class_labels is None:
            return None
        if isinstance(class_labels, torch.Tensor):
            class_labels = class_labels.reshape(-1).tolist()
        if isinstance(class_labels, (int, str, np.integer)):
            class_labels = [class_labels] * batch_size
        elif not isinstance(class_labels, (list, tuple)):
            raise TypeError("class_labels must be a class index or name, a list of them or a tensor, got "
                            f"{type(class_labels).__name__}")
        elif not class_labels:
            raise ValueError("class_labels is empty: pass at least one label (or None for unconditional sampling)")
        elif batch_size not in (1, len(class_labels)):
            raise ValueError(f"batch_size={batch_size} disagrees with the {len(class_labels)} class_labels given")
        return torch.tensor([self.class_index(label) for label in class_labels], dtype=torch.long)

    def check_inputs(
        self,
        labels: torch.Tensor | None,
        classifier_scale: float,
        guidance_scale: float | None,
        output_type: str,
        low_res: torch.Tensor | None,
        callback_on_step_end_tensor_inputs: Sequence[str],
        batch_size: int = 1,
        use_ddim: bool = False,
        eta: float = 0.0,
        generator: Any = None,
        latents: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        callback_on_step_end: Any = None,
    ) -> None:
        config = self.unet.config
        check_number("classifier_scale", classifier_scale, minimum=0)
        check_sampling(self.scheduler.config.num_train_timesteps, num_inference_steps, use_ddim, eta, guidance_scale)
        check_generator(generator, batch_size)
        if latents is not None:
            check_tensor("latents", latents, ndim=4)
        if low_res is not None:
            check_tensor("low_res", low_res, ndim=4)
        check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        if config.num_classes is not None and labels is None:
            raise ValueError(f"the U-Net is class-conditional ({config.num_classes} classes): pass class_labels")
        if classifier_scale < 0:
            raise ValueError(f"classifier_scale must be >= 0, got {classifier_scale}")
        if classifier_scale > 0 and self.classifier is None:
            raise ValueError(f"classifier_scale={classifier_scale} needs a classifier, but this pipeline has none")
        if classifier_scale > 0 and labels is None:
            raise ValueError("classifier guidance needs class_labels (the classes to guide towards)")
        if labels is not None and config.num_classes is None and not classifier_scale > 0:
            raise ValueError("class_labels were given but the U-Net is unconditional and classifier_scale is 0")
        if guidance_scale is not None and guidance_scale != 1.0 and not config.null_class_embedding:
            raise ValueError(
                f"guidance_scale={guidance_scale} (classifier-free guidance) needs a U-Net trained with label dropout "
                "(config null_class_embedding=True); this one has none"
            )
        check_choice("output_type", output_type, OUTPUT_TYPES)
        if (low_res is None) != (config.low_res_channels == 0):
            raise ValueError(
                "low_res must be given exactly for super-resolution U-Nets "
                f"(low_res_channels={config.low_res_channels})"
            )

    def prepare_latents(
        self,
        batch_size: int,
        generator: torch.Generator | None,
        latents: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        """x_T ~ N(0, I) of shape ``[N, in_channels, sample_size, sample_size]`` (float32), or the given latents."""
        config = self.unet.config
        if latents is None and config.sample_size is None:
            raise ValueError("the U-Net config has no sample_size: pass latents of shape [N, C, H, W]")
        size = config.sample_size if config.sample_size is not None else latents.shape[-1]
        shape = (batch_size, config.in_channels, size, size)
        if latents is None:
            return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        if tuple(latents.shape) != shape and not (
            latents.ndim == 4 and latents.shape[:2] == shape[:2] and config.sample_size is None
        ):
            raise ValueError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
        return latents.to(device=device, dtype=torch.float32)

    def sampler(self, use_ddim: bool) -> ImprovedDiffusionScheduler:
        """The DDPM or DDIM scheduler on this pipeline's diffusion configuration."""
        wanted = ImprovedDDIMScheduler if use_ddim else ImprovedDDPMScheduler
        return self.scheduler if type(self.scheduler) is wanted else wanted.from_config(self.scheduler.config)

    # -- one denoising evaluation -------------------------------------------------------------------------------

    def predict(
        self,
        latents: torch.Tensor,
        model_timestep: torch.Tensor,
        labels: torch.Tensor | None,
        guidance_scale: float | None,
        low_res: torch.Tensor | None,
    ) -> torch.Tensor:
        """The U-Net output for x_t, ``[N, out_channels, H, W]`` float32. With classifier-free guidance (Ho &
        Salimans 2021) ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) − ε(x_t, ∅)); a learned variance is taken from the conditional
        pass."""
        unet_pass = lambda y, x, t, low: self.unet(x, t, y, low_res=low).sample.float()  # noqa: E731
        return classifier_free_guidance(unet_pass, labels, self.unet.config.num_classes, guidance_scale, latents,
                                        model_timestep, low_res)

    def classifier_gradient(
        self, latents: torch.Tensor, model_timestep: torch.Tensor, labels: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """g = s · ∇_{x_t} log p_φ(y | x_t, t), ``[N, C, H, W]`` (Dhariwal & Nichol 2021, Alg. 1–2)."""
        with torch.enable_grad():
            x_in = latents.detach().requires_grad_(True)
            log_probs = F.log_softmax(self.classifier(x_in, model_timestep).float(), dim=-1)
            selected = log_probs[torch.arange(len(labels), device=labels.device), labels].sum()
            return torch.autograd.grad(selected, x_in)[0] * scale

    # -- sampling ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        class_labels: ClassLabels | None = None,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        timestep_respacing: str | None = None,
        use_ddim: bool = False,
        eta: float = 0.0,
        classifier_scale: float = 0.0,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable[[DiffusionPipeline, int, torch.Tensor, dict[str, Any]], dict[str, Any]]
        | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        low_res: torch.Tensor | None = None,
    ) -> ImagePipelineOutput | tuple:
        r"""Sample images.

        Args:
            class_labels: class index or name (``unet.config.class_names``), or one per image. A single label is
                repeated ``batch_size`` times; a list sets the batch size.
            batch_size: images to draw when ``class_labels`` is ``None`` or a single label.
            num_inference_steps / timestep_respacing: the respaced schedule (a count, or an improved-diffusion string
                such as ``"250"``, ``"10,20,30"``, ``"ddim25"``); neither = all training steps.
            use_ddim, eta: DDIM(η) steps instead of ancestral ones.
            classifier_scale: s of classifier guidance; DDPM steps shift the mean by Σ·s·∇log p(y|x_t)
                (``condition_mean``), DDIM steps use ε ← ε − √(1−ᾱ_t)·s·∇log p(y|x_t) (``condition_score``).
            guidance_scale: classifier-free guidance weight w (U-Nets with ``null_class_embedding``); ``None``/1 = off.
            generator, latents: the RNG (see the module docstring) and optional x_T ``[N, C, H, W]``.
            output_type: "pil", "np" (NHWC float in [0, 1]), "pt" (NCHW float in [0, 1]) or "latent" (x_0 in [−1, 1]).
            callback_on_step_end: ``callback(pipe, step, timestep, {"latents": ...}) -> dict`` after every step; a
                returned "latents" replaces the current sample.
            low_res: super-resolution U-Nets only: the low-resolution images, NCHW in [0, 1].
        """
        check_count("batch_size", batch_size)
        check_flag("return_dict", return_dict)
        labels = self.prepare_class_labels(class_labels, batch_size)
        if labels is not None:
            batch_size = len(labels)
        self.check_inputs(
            labels, classifier_scale, guidance_scale, output_type, low_res, callback_on_step_end_tensor_inputs,
            batch_size, use_ddim, eta, generator, latents, num_inference_steps, callback_on_step_end,
        )
        device = self._execution_device
        if labels is not None:
            labels = labels.to(device)
        if low_res is not None:
            if low_res.ndim != 4 or low_res.shape[:2] != (batch_size, self.unet.config.low_res_channels):
                raise ValueError(
                    f"low_res has shape {tuple(low_res.shape)}, expected [{batch_size}, "
                    f"{self.unet.config.low_res_channels}, h, w]"
                )
            low_res = low_res.to(device=device, dtype=torch.float32) * 2 - 1
        unet_labels = labels if self.unet.config.num_classes is not None else None

        latents = self.prepare_latents(batch_size, generator, latents, device)
        scheduler = self.sampler(use_ddim)
        scheduler.set_timesteps(
            num_inference_steps=num_inference_steps, timestep_respacing=timestep_respacing, device=device
        )
        step_kwargs = {"eta": eta} if use_ddim else {}

        for step, t in enumerate(self.progress_bar(scheduler.timesteps)):
            model_timestep = scheduler.model_timestep(t).to(device).expand(batch_size)
            model_output = self.predict(latents, model_timestep, unet_labels, guidance_scale, low_res)
            gradient = None
            if classifier_scale > 0:
                gradient = self.classifier_gradient(latents, model_timestep, labels, classifier_scale)
            latents = checked_step(
                scheduler, step, "latents, low_res, classifier_scale, guidance_scale and eta", model_output, t,
                latents, generator=generator, guidance_gradient=gradient, **step_kwargs,
            ).prev_sample
            if callback_on_step_end is not None:
                current = {"latents": latents}
                tensors = {name: current[name] for name in callback_on_step_end_tensor_inputs}
                latents = callback_on_step_end(self, step, t, tensors).get("latents", latents)

        self.maybe_free_model_hooks()
        if output_type == "latent":
            images = latents
        else:
            images = ((latents + 1) / 2).clamp(0, 1)
            if output_type != "pt":
                images = images.permute(0, 2, 3, 1).cpu().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
