"""ADM sampling (Dhariwal & Nichol 2021): ancestral or DDIM steps with classifier guidance and classifier-free guidance.

RNG contract: with one ``torch.Generator``, the initial noise is drawn first, then each stochastic step's noise, each
of the sample's shape, in sampling order — so a run equals guided-diffusion's ``p_sample_loop`` /
``ddim_sample_loop`` under ``torch.manual_seed`` of the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.utils import replace_example_docstring

from ..augmentation import truncated_timesteps
from ..checks import (
    check_callback, check_count, check_flag, check_generator, check_number, check_sampling, check_tensor,
)
from ..models.adm_classifier import ADMClassifierModel
from ..models.adm_unet import ADMUNet2DModel
from ..schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler
from ..schedulers.improved_diffusion_base import ImprovedDiffusionScheduler
from .class_labels import ClassConditionalMixin, ClassLabels  # noqa: F401 (ClassLabels: the stages' type)
from .hub import FolderPipelineMixin
from .sampling import (
    Model, SamplingMixin, StepCallback, check_output_type, classifier_free_guidance, denoise, postprocess,
)


@dataclass(frozen=True)
class StageSampling:
    """How one ADM-family stage samples: its respaced schedule, DDPM or DDIM(η) steps, classifier-free guidance."""

    num_inference_steps: int | None = None
    timestep_respacing: str | None = None
    use_ddim: bool = False
    eta: float = 0.0
    guidance_scale: float | None = None

    def check(self, num_train_timesteps: int) -> None:
        check_sampling(num_train_timesteps, self.num_inference_steps, self.use_ddim, self.eta, self.guidance_scale)

    def or_default(self, default_num_inference_steps: int | None) -> StageSampling:
        """These settings, with the folder's recorded step count when the caller chose no schedule at all."""
        if self.num_inference_steps is not None or self.timestep_respacing is not None:
            return self
        return replace(self, num_inference_steps=default_num_inference_steps)

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> pipe = DiffusionPipeline.from_pretrained("pipelines/adm-glyphs-32", trust_remote_code=True)
        >>> images = pipe(class_labels=["3", "7"], num_inference_steps=50, generator=torch.manual_seed(0)).images
        ```
"""


class ADMSamplingMixin(ClassConditionalMixin, SamplingMixin):
    """What the ADM-family pipelines share (an ``unet`` with optional class names; a DDPM/DDIM scheduler on the
    training diffusion): class labels and the initial noise (:class:`ClassConditionalMixin`), the inference
    schedule."""

    def record_default_steps(self, default_num_inference_steps: int | None) -> None:
        """Keep the folder's recommended step count in its model_index.json (``None`` = all training steps)."""
        if default_num_inference_steps is not None:
            check_number("default_num_inference_steps", default_num_inference_steps, minimum=1,
                         maximum=self.scheduler.config.num_train_timesteps, integer=True)
        self.register_to_config(default_num_inference_steps=default_num_inference_steps)

    @property
    def default_sampling(self) -> int | None:
        """The recorded step count a call uses when it names no schedule."""
        return self.config.get("default_num_inference_steps")

    def check_sampling_inputs(
        self,
        labels: torch.Tensor | None,
        sampling: StageSampling,
        output_type: str,
        batch_size: int,
        generator: Any,
        latents: torch.Tensor | None,
        callbacks: dict[str, Any],
        classifier_guided: bool = False,
    ) -> None:
        """The arguments every ADM-family stage takes (``ValueError``/``TypeError`` naming the argument)."""
        config = self.unet.config
        guidance_scale = sampling.guidance_scale
        sampling.check(self.scheduler.config.num_train_timesteps)
        check_generator(generator, batch_size)
        if latents is not None:
            check_tensor("latents", latents, ndim=4)
        check_callback(callbacks["callback_on_step_end"], callbacks["callback_on_step_end_tensor_inputs"],
                       self._callback_tensor_inputs)
        check_output_type(output_type)
        if config.num_classes is not None and labels is None:
            raise ValueError(f"the U-Net is class-conditional ({config.num_classes} classes): pass class_labels")
        if labels is not None and config.num_classes is None and not classifier_guided:
            raise ValueError("class_labels were given but the U-Net is unconditional (and there is no classifier "
                             "guidance)")
        if guidance_scale is not None and guidance_scale != 1.0 and not config.null_class_embedding:
            raise ValueError(
                f"guidance_scale={guidance_scale} (classifier-free guidance) needs a U-Net trained with label dropout "
                "(config null_class_embedding=True); this one has none"
            )

    def sampler(self, use_ddim: bool) -> ImprovedDiffusionScheduler:
        """The DDPM or DDIM scheduler on this pipeline's diffusion configuration."""
        wanted = ImprovedDDIMScheduler if use_ddim else ImprovedDDPMScheduler
        return self.scheduler if type(self.scheduler) is wanted else wanted.from_config(self.scheduler.config)

    def inference_scheduler(self, sampling: StageSampling, stop_at: int | None = None,
                            device: torch.device | None = None) -> ImprovedDiffusionScheduler:
        """The DDPM/DDIM scheduler with its inference schedule set; with ``stop_at=s`` truncated at s
        (:func:`~diffusion_canon.augmentation.truncated_timesteps`)."""
        scheduler = self.sampler(sampling.use_ddim)
        scheduler.set_timesteps(num_inference_steps=sampling.num_inference_steps,
                                timestep_respacing=sampling.timestep_respacing, device=device)
        if stop_at is not None:
            scheduler.set_timesteps(timesteps=truncated_timesteps(scheduler.timesteps, stop_at), device=device)
        return scheduler

    def reverse_process(
        self,
        model: Model,
        batch_size: int,
        sampling: StageSampling,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        stop_at: int | None = None,
        callbacks: dict[str, Any] | None = None,
        **denoise_kwargs: Any,
    ) -> torch.Tensor:
        """Draw x_T (unless ``latents``) and run :func:`~.sampling.denoise` on this stage's schedule → x_0 (or z_s
        with ``stop_at=s``) in model space; ``callbacks`` and ``denoise_kwargs`` go to ``denoise``."""
        latents = self.prepare_latents(batch_size, generator, latents, device)
        scheduler = self.inference_scheduler(sampling, stop_at, device)
        return denoise(self, scheduler, model, latents, generator=generator, stop_at=stop_at,
                       step_kwargs={"eta": sampling.eta} if sampling.use_ddim else None, **(callbacks or {}),
                       **denoise_kwargs)

    def labels_under_guidance(self, labels: torch.Tensor | None, keep: torch.Tensor | None) -> torch.Tensor | None:
        """A conditioned model's labels: under guidance the batch is [kept; dropped], the dropped half labelled
        with the null class (index ``num_classes``)."""
        if labels is None or keep is None:
            return labels
        return torch.where(keep, torch.cat([labels, labels]), self.unet.config.num_classes)


class ADMPipeline(ADMSamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""Class-conditional or unconditional ADM sampling.

    Components:
        unet: :class:`~diffusion_canon.models.ADMUNet2DModel` (ε and, for learned σ, the variance interpolation).
        scheduler: an :class:`~diffusion_canon.schedulers.ImprovedDDPMScheduler` (or DDIM) describing the training
            diffusion; ``use_ddim`` switches the sampler on the same configuration.
        classifier: optional :class:`~diffusion_canon.models.ADMClassifierModel` for classifier guidance.

    Config:
        default_num_inference_steps: the step count a call uses when it names neither ``num_inference_steps`` nor
            ``timestep_respacing`` (stored in model_index.json; ``None`` = all training steps, the reference's
            default).
    """

    model_cpu_offload_seq = "unet"
    _optional_components = ["classifier"]

    def __init__(
        self,
        unet: ADMUNet2DModel,
        scheduler: ImprovedDiffusionScheduler,
        classifier: ADMClassifierModel | None = None,
        default_num_inference_steps: int | None = None,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, classifier=classifier)
        self.record_default_steps(default_num_inference_steps)

    def check_inputs(
        self,
        labels: torch.Tensor | None,
        classifier_scale: float,
        sampling: StageSampling,
        output_type: str,
        batch_size: int,
        generator: Any,
        latents: torch.Tensor | None,
        callbacks: dict[str, Any],
    ) -> None:
        check_number("classifier_scale", classifier_scale, minimum=0)
        self.check_sampling_inputs(labels, sampling, output_type, batch_size, generator, latents, callbacks,
                                   classifier_guided=classifier_scale > 0)
        if classifier_scale > 0 and self.classifier is None:
            raise ValueError(f"classifier_scale={classifier_scale} needs a classifier, but this pipeline has none")
        if classifier_scale > 0 and labels is None:
            raise ValueError("classifier guidance needs class_labels (the classes to guide towards)")
        low_res_channels = self.unet.config.low_res_channels
        if low_res_channels:
            raise ValueError(
                f"this U-Net is a super-resolution model (low_res_channels={low_res_channels}): sample it with "
                "SuperResolutionPipeline"
            )

    # -- the model as a function --------------------------------------------------------------------------------

    def model(self, labels: torch.Tensor | None) -> Model:
        """``(x_t, model_timestep) -> U-Net output`` float32, with classifier-free guidance when the current run asks
        for it (ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) − ε(x_t, ∅)); a learned variance from the conditional pass)."""
        labels = self.unet_labels(labels)

        def unet(x: torch.Tensor, model_timestep: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            return self.unet(x, model_timestep, self.labels_under_guidance(labels, keep)).sample.float()

        return classifier_free_guidance(unet, self, channels=self.unet.config.in_channels)

    def classifier_gradient(self, labels: torch.Tensor, scale: float) -> Model:
        """g(x_t, t) = s · ∇_{x_t} log p_φ(y | x_t, t), ``[N, C, H, W]`` (Dhariwal & Nichol 2021, Alg. 1–2)."""

        def gradient(latents: torch.Tensor, model_timestep: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                x_in = latents.detach().requires_grad_(True)
                log_probs = F.log_softmax(self.classifier(x_in, model_timestep).logits.float(), dim=-1)
                selected = log_probs[torch.arange(len(labels), device=labels.device), labels].sum()
                return torch.autograd.grad(selected, x_in)[0] * scale

        return gradient

    def sample(
        self,
        labels: torch.Tensor | None,
        batch_size: int,
        sampling: StageSampling,
        classifier_scale: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        stop_at: int | None = None,
        callbacks: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The reverse process → x_0 (or z_s with ``stop_at=s``) in model space, ``[N, C, H, W]``; arguments checked
        by the caller."""
        self.begin_sampling(sampling.guidance_scale)
        gradient = self.classifier_gradient(labels, classifier_scale) if classifier_scale > 0 else None
        return self.reverse_process(self.model(labels), batch_size, sampling, self._execution_device, generator,
                                    latents, stop_at, callbacks, guidance_gradient=gradient,
                                    causes="latents, classifier_scale, guidance_scale and eta")

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
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
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""Sample images.

        Args:
            class_labels: class index or name (``unet.config.class_names``), or one per image. A single label is
                repeated ``batch_size`` times; a list sets the batch size.
            batch_size: images to draw when ``class_labels`` is ``None`` or a single label.
            num_inference_steps: denoising steps, evenly spaced from the last training step T−1 down to 0 (1 step =
                T−1 alone). Neither this nor ``timestep_respacing``: the folder's ``default_num_inference_steps``
                (all T training steps when it records none).
            timestep_respacing: an improved-diffusion respacing string with the reference's meaning ("250",
                "10,20,30", "ddim25"; note the reference's "1" keeps only t = 0).
            use_ddim, eta: DDIM(η) steps instead of ancestral ones.
            classifier_scale: s of classifier guidance; DDPM steps shift the mean by Σ·s·∇log p(y|x_t)
                (``condition_mean``), DDIM steps use ε ← ε − √(1−ᾱ_t)·s·∇log p(y|x_t) (``condition_score``).
            guidance_scale: classifier-free guidance weight w (U-Nets with ``null_class_embedding``); ``None``/1 = off.
            generator: the RNG (see the module docstring); a list of one generator per image is accepted too.
            latents: optional x_T ``[N, C, H, W]``.
            output_type: "pil", "np" (NHWC float in [0, 1]), "pt" (NCHW float in [0, 1]) or "latent" (x_0 in [−1, 1]).
            return_dict: return an ``ImagePipelineOutput`` (else a tuple).
            callback_on_step_end: ``callback(pipe, step, timestep, {"latents": ...}) -> dict`` after every step; a
                returned "latents" replaces the current sample; it may change ``pipe._guidance_scale`` or set
                ``pipe._interrupt``.
            callback_on_step_end_tensor_inputs: the tensors the callback receives (``_callback_tensor_inputs``).

        Examples:

        Returns:
            ``ImagePipelineOutput`` with ``images`` in ``output_type`` (or the tuple ``(images,)``).
        """
        check_count("batch_size", batch_size)
        check_flag("return_dict", return_dict)
        labels = self.prepare_class_labels(class_labels, batch_size)
        if labels is not None:
            batch_size = len(labels)
        sampling = StageSampling(num_inference_steps, timestep_respacing, use_ddim, eta, guidance_scale).or_default(
            self.default_sampling)
        callbacks = dict(callback_on_step_end=callback_on_step_end,
                         callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs)
        self.check_inputs(labels, classifier_scale, sampling, output_type, batch_size, generator, latents, callbacks)
        if labels is not None:
            labels = labels.to(self._execution_device)
        samples = self.sample(labels, batch_size, sampling, classifier_scale, generator, latents, callbacks=callbacks)
        self.maybe_free_model_hooks()
        images = postprocess(samples, output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)

