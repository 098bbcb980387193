"""Sampling an EDM (Karras et al. 2022) denoiser or a consistency model (Song et al. 2023) with the reference's
samplers: openai/consistency_models' ``karras_sample`` (heun, euler, onestep, multistep, progdist), on the one sampling
core; a progressively distilled student (Salimans & Ho 2022) is sampled with progdist at the step count it was
distilled for.

RNG contract: with one ``torch.Generator``, x_T = σ_max·randn is drawn first, then each step's noise (Heun: one draw
at the start of every step, used where it churns; multistep: one after every evaluation but the last), each of the
sample's shape, in order — so a run equals ``karras_sample`` under ``torch.manual_seed`` of the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, ModelMixin, SchedulerMixin  # noqa: F401 (see hub.py)
from diffusers.utils import replace_example_docstring

from ..checks import check_callback, check_choice, check_count, check_flag, check_generator, check_number, check_tensor
from ..models.adm_unet import ADMUNet2DModel
from ..models.reference_fp16_attention import use_reference_fp16_attention
from ..schedulers.scheduling_karras import (  # noqa: F401 (component loaders, see hub.py)
    SAMPLERS, ConsistencyScheduler, KarrasDiffusionScheduler, KarrasEulerScheduler, KarrasHeunScheduler,
    ProgressiveDistillationScheduler,
)
from .class_labels import ClassConditionalMixin, ClassLabels
from .hub import FolderPipelineMixin
from .sampling import SamplingMixin, StepCallback, check_output_type, denoise, postprocess


def parse_ts(ts: str) -> list[int]:
    """The reference's ``--ts`` ("0,22,39") as grid indices; ``ValueError`` naming it otherwise."""
    try:
        return [int(part) for part in ts.split(",")]
    except (AttributeError, ValueError):
        raise ValueError(f"timesteps {ts!r} must be comma-separated grid indices such as '0,22,39'") from None


def check_multistep_timesteps(value) -> None:
    """``{"n": "--ts of n steps"}``: each value n + 1 comma-separated indices; ``ValueError`` naming the entry."""
    if not isinstance(value, dict):
        raise TypeError(f"multistep_timesteps must be a dict such as {{'2': '0,22,39'}}, got {value!r}")
    for steps, ts in value.items():
        if not (isinstance(steps, str) and steps.isdigit() and len(parse_ts(ts)) == int(steps) + 1):
            raise ValueError(f"multistep_timesteps[{steps!r}] = {ts!r} must list {steps} + 1 grid indices")


SCHEDULERS = {"heun": KarrasHeunScheduler, "euler": KarrasEulerScheduler, "onestep": ConsistencyScheduler,
              "multistep": ConsistencyScheduler, "progdist": ProgressiveDistillationScheduler}
DEFAULT_SAMPLERS = {KarrasHeunScheduler: "heun", KarrasEulerScheduler: "euler",
                    ProgressiveDistillationScheduler: "progdist"}

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from diffusers import DiffusionPipeline
        >>> pipe = DiffusionPipeline.from_pretrained("converted-cd-imagenet64-l2", trust_remote_code=True)
        >>> one_step = pipe(class_labels=[207, 360], generator=torch.manual_seed(0)).images
        >>> two_steps = pipe(class_labels=[207], sampler="multistep", timesteps=[0, 22, 39]).images
        ```
"""


class EDMPipeline(ClassConditionalMixin, SamplingMixin, FolderPipelineMixin, DiffusionPipeline):
    r"""An ADM U-Net as an EDM denoiser or a consistency model, sampled with the reference's samplers.

    Components:
        unet: :class:`~diffusion_canon.models.ADMUNet2DModel` (the network F, which sees c_in·x and 1000·¼·log σ).
        scheduler: one of :mod:`~diffusion_canon.schedulers.scheduling_karras`'s schedulers; its config (σ range,
            σ_data, ρ, ``boundary_condition``, ``clip_denoised``) is the denoiser's. ``sampler`` picks the sampler on
            that config.

    Config:
        grid_size: the reference's ``--steps``: the Karras grid ``timesteps`` index into, and Heun's / Euler's default
            step count.
        default_timesteps: the multistep ``--ts`` ("0,22,39") a call uses when it names no schedule (``None``:
            onestep). A string, as the reference writes it (model_index.json reads two-element lists as components).
        reference_fp16_attention: attention in float16 as the reference computes it (its ``QKVAttentionLegacy``);
            False: float32.
        distilled_steps: a progressively distilled student's N: progdist sampling takes exactly N steps (the
            levels it was distilled on); ``None``: any.
        multistep_timesteps: the ``--ts`` to use for ``num_inference_steps=n`` when a call gives none, as
            ``{"2": "0,22,39", …}`` (found by search: ``training/search_consistency_timesteps.py``); other n spread
            their indices evenly over the grid.
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: ADMUNet2DModel, scheduler: KarrasDiffusionScheduler, grid_size: int = 40,
                 default_timesteps: str | None = None, reference_fp16_attention: bool = False,
                 distilled_steps: int | None = None, multistep_timesteps: dict[str, str] | None = None):
        super().__init__()
        check_number("grid_size", grid_size, minimum=1, integer=True)
        if distilled_steps is not None:
            check_number("distilled_steps", distilled_steps, minimum=1, integer=True)
        check_flag("reference_fp16_attention", reference_fp16_attention)
        if default_timesteps is not None:
            parse_ts(default_timesteps)
        if multistep_timesteps is not None:
            check_multistep_timesteps(multistep_timesteps)
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(grid_size=grid_size, default_timesteps=default_timesteps,
                                reference_fp16_attention=reference_fp16_attention, distilled_steps=distilled_steps,
                                multistep_timesteps=multistep_timesteps)
        if reference_fp16_attention:
            use_reference_fp16_attention(unet)

    @property
    def is_consistency_model(self) -> bool:
        """Trained with the boundary condition (consistency distillation or training): onestep / multistep."""
        return bool(self.scheduler.config.boundary_condition)

    def inference_scheduler(self, sampler: str | None, num_inference_steps: int | None,
                            timesteps: Sequence[int] | None, churn: dict[str, float]) -> KarrasDiffusionScheduler:
        """The scheduler of ``sampler`` (default: onestep/multistep for consistency models, the folder's scheduler's
        otherwise) with its schedule set; ``ValueError`` for a sampler or arguments it does not take."""
        if sampler is None:  # the folder's own sampler; for consistency models one step unless more are asked
            sampler = DEFAULT_SAMPLERS.get(type(self.scheduler))
            if sampler is None or timesteps is not None:
                if timesteps is None and num_inference_steps is None and self.config.get("default_timesteps"):
                    timesteps = parse_ts(self.config.default_timesteps)
                sampler = "multistep" if timesteps is not None or (num_inference_steps or 1) > 1 else "onestep"
        check_choice("sampler", sampler, SAMPLERS)
        if timesteps is not None and sampler not in ("onestep", "multistep"):
            raise ValueError(f"timesteps (the reference's --ts) are for the consistency samplers, not sampler={sampler!r}")
        if sampler != "heun" and any(value != default for value, default in zip(churn.values(), (0.0, 0.0, float("inf"), 1.0))):
            raise ValueError(f"s_churn, s_tmin, s_tmax and s_noise are Heun's (sampler='heun'), not sampler={sampler!r}")
        wanted = SCHEDULERS[sampler]
        scheduler = self.scheduler if type(self.scheduler) is wanted else wanted.from_config(self.scheduler.config)
        device = self._execution_device
        if sampler == "heun":
            steps = self.config.grid_size if num_inference_steps is None else num_inference_steps
            scheduler.set_timesteps(steps, device, **churn)
        elif sampler == "euler":
            scheduler.set_timesteps(self.config.grid_size if num_inference_steps is None else num_inference_steps, device)
        elif sampler == "progdist":
            distilled = self.config.get("distilled_steps")
            if distilled is not None and num_inference_steps not in (None, distilled):
                raise ValueError(f"this student was distilled for {distilled} steps: num_inference_steps="
                                 f"{num_inference_steps!r} is not supported by sampler='progdist' (pass {distilled} or "
                                 f"none; sampler='euler' or 'heun' take any count)")
            steps = num_inference_steps if num_inference_steps is not None else distilled or self.config.grid_size
            scheduler.set_timesteps(steps, device)
        elif sampler == "onestep":
            if num_inference_steps not in (None, 1) or (timesteps is not None and len(timesteps) != 1):
                raise ValueError("sampler='onestep' takes one step: num_inference_steps=1 (or none)")
            scheduler.set_timesteps(1, device, grid_size=self.config.grid_size)
        else:
            if timesteps is not None and num_inference_steps not in (None, len(timesteps) - 1):
                raise ValueError(f"num_inference_steps={num_inference_steps} disagrees with timesteps={list(timesteps)} "
                                 f"({len(timesteps) - 1} denoising steps)")
            if timesteps is None and num_inference_steps is None:
                num_inference_steps = 2
            searched = self.config.get("multistep_timesteps") or {}
            if timesteps is None and str(num_inference_steps) in searched:
                timesteps = parse_ts(searched[str(num_inference_steps)])
            if timesteps is None and num_inference_steps == 1:
                raise ValueError("sampler='multistep' needs num_inference_steps >= 2 (1 step is sampler='onestep')")
            scheduler.set_timesteps(num_inference_steps if timesteps is None else None, device,
                                    timesteps=None if timesteps is None else list(timesteps),
                                    grid_size=self.config.grid_size)
        return scheduler

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        class_labels: ClassLabels | None = None,
        batch_size: int = 1,
        sampler: str | None = None,
        num_inference_steps: int | None = None,
        timesteps: Sequence[int] | None = None,
        s_churn: float = 0.0,
        s_tmin: float = 0.0,
        s_tmax: float = float("inf"),
        s_noise: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: StepCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> ImagePipelineOutput | tuple:
        r"""Sample images with one of the reference's samplers.

        Args:
            class_labels, batch_size: as :class:`~diffusion_canon.pipelines.ADMPipeline`.
            sampler: "heun", "euler", "onestep", "multistep" or "progdist"; default: "onestep" (one step) or
                "multistep" for a consistency model, else the folder's scheduler's ("progdist" for a distilled
                student, "heun" for an EDM model).
            num_inference_steps: heun / euler: the reference's ``--steps`` (default: the folder's ``grid_size``; Heun
                evaluates the network 2·steps − 1 times); consistency sampling: the number of denoising steps (1 =
                onestep; default: the folder's ``default_timesteps``, else 1); progdist: the student's N (default and
                only value: the folder's ``distilled_steps``).
            timesteps: multistep: the reference's ``--ts``, increasing indices into the Karras grid of
                ``grid_size`` levels (the folder's ``--steps``), from 0; ends at ``grid_size − 1`` for clean samples.
            s_churn, s_tmin, s_tmax, s_noise: Heun's stochasticity (Karras et al. 2022, Algorithm 2).
            generator: the RNG (see the module docstring); latents: optional unit-variance noise ``[N, C, H, W]``
                (scaled by σ_max here).
            output_type: "pil", "np" (NHWC in [0, 1]), "pt" (NCHW in [0, 1]) or "latent" (x_0 in [−1, 1]).
            return_dict: return an ``ImagePipelineOutput`` (else a tuple).
            callback_on_step_end, callback_on_step_end_tensor_inputs: after every network evaluation, as
                :class:`~diffusion_canon.pipelines.ADMPipeline`.

        Examples:

        Returns:
            ``ImagePipelineOutput`` with ``images`` in ``output_type`` (or the tuple ``(images,)``). As the reference,
            the samples are clamped to [−1, 1].
        """
        check_count("batch_size", batch_size)
        check_flag("return_dict", return_dict)
        check_output_type(output_type)
        check_callback(callback_on_step_end, callback_on_step_end_tensor_inputs, self._callback_tensor_inputs)
        for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
            check_number(name, value, minimum=0)
        if not isinstance(s_tmax, (int, float)) or isinstance(s_tmax, bool) or s_tmax != s_tmax:
            raise TypeError(f"s_tmax must be a number (inf allowed), got {s_tmax!r}")
        if latents is not None:
            check_tensor("latents", latents, ndim=4)
        labels = self.prepare_class_labels(class_labels, batch_size)
        if labels is not None:
            batch_size = len(labels)
        if self.unet.config.num_classes is not None and labels is None:
            raise ValueError(f"the U-Net is class-conditional ({self.unet.config.num_classes} classes): pass class_labels")
        check_generator(generator, batch_size)
        churn = dict(s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)
        scheduler = self.inference_scheduler(sampler, num_inference_steps, timesteps, churn)

        device = self._execution_device
        labels = None if labels is None else self.unet_labels(labels.to(device))
        self.begin_sampling(None)
        x_T = self.prepare_latents(batch_size, generator, latents, device) * scheduler.init_noise_sigma

        def network(x: torch.Tensor, model_timestep: torch.Tensor) -> torch.Tensor:
            return self.unet(x, model_timestep, labels).sample.float()

        samples = denoise(self, scheduler, network, x_T, generator=generator,
                          callback_on_step_end=callback_on_step_end,
                          callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
                          causes="latents and the sampler's settings").clamp(-1, 1)
        self.maybe_free_model_hooks()
        images = postprocess(samples, output_type)
        if not return_dict:
            return (images,)
        return ImagePipelineOutput(images=images)
