"""Convert openai/consistency_models checkpoints (EDM teachers, consistency distillation / training students) into an
:class:`~diffusion_canon.pipelines.EDMPipeline` folder.

The network is guided-diffusion's U-Net (the same state-dict keys), built by the reference's ``create_model`` from
its ``image_sample.py`` flags with that repository's defaults; its attention stores q/k/v rows as "(three heads dim)",
the layout our ADM converter calls the new attention order. ``--training_mode`` decides the denoiser: ``edm`` the EDM
preconditioning, ``consistency_*`` the boundary condition; the sampling flags (``--sampler``, ``--steps``, ``--ts``,
``--s_churn`` …) become the folder's scheduler and defaults, and stay call arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import check_choice
from .adm import DTYPES, convert_unet, load_checkpoint
from .adm_flags import IMAGENET_CLASSES, _attention_factors, _channel_mult, _GUIDED_MULT, parse_flags, unet_config

TRAINING_MODES = ("edm", "consistency_distillation", "consistency_training")
# the defaults of the reference's scripts/image_sample.py (create_argparser): model_and_diffusion_defaults() + sampling
CM_FLAG_DEFAULTS: dict[str, Any] = {
    "sigma_min": 0.002, "sigma_max": 80.0, "image_size": 64, "num_channels": 128, "num_res_blocks": 2,
    "num_heads": 4, "num_heads_upsample": -1, "num_head_channels": -1, "attention_resolutions": "32,16,8",
    "channel_mult": "", "dropout": 0.0, "class_cond": False, "use_checkpoint": False, "use_scale_shift_norm": True,
    "resblock_updown": False, "use_fp16": False, "use_new_attention_order": False, "learn_sigma": False,
    "weight_schedule": "karras",
    "training_mode": "edm", "generator": "determ", "clip_denoised": True, "num_samples": 10000, "batch_size": 16,
    "sampler": "heun", "s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0, "steps": 40,
    "model_path": "", "seed": 42, "ts": "",
}  # fmt: skip
SAMPLERS = ("heun", "euler", "onestep", "multistep")


@dataclass
class ConsistencyFlags:
    """A parsed ``image_sample.py`` flags string."""

    unet_kwargs: dict[str, Any]  # the reference UNetModel constructor arguments
    distillation: bool  # the boundary-condition preconditioning (consistency models)
    values: dict[str, Any]  # every flag, defaults filled in


def consistency_flags(flags: str) -> ConsistencyFlags:
    """Parse the reference's ``image_sample.py`` flags; ``ValueError`` names an unknown flag or a value the reference
    would reject (training mode, sampler, multistep without ``--ts``, a ``--ts`` outside the grid)."""
    values, _ = parse_flags(flags, CM_FLAG_DEFAULTS)
    check_choice("--training_mode", values["training_mode"], TRAINING_MODES)
    check_choice("--sampler", values["sampler"], SAMPLERS)
    if values["sampler"] == "multistep":
        if not values["ts"]:
            raise ValueError("--sampler multistep needs --ts (comma-separated indices into the --steps grid)")
        ts = [int(k) for k in values["ts"].split(",")]
        if any(not 0 <= k < values["steps"] for k in ts):
            raise ValueError(f"--ts {values['ts']} must index the grid of --steps {values['steps']} (0 … "
                             f"{values['steps'] - 1})")
    size = values["image_size"]
    channel_mult = (tuple(int(m) for m in values["channel_mult"].split(",")) if values["channel_mult"]
                    else _channel_mult(_GUIDED_MULT, size, "consistency-models"))
    unet_kwargs = {
        "image_size": size, "in_channels": 3, "model_channels": values["num_channels"],
        "out_channels": 6 if values["learn_sigma"] else 3, "num_res_blocks": values["num_res_blocks"],
        "attention_resolutions": _attention_factors(values["attention_resolutions"], size),
        "dropout": values["dropout"], "channel_mult": list(channel_mult),
        "num_classes": IMAGENET_CLASSES if values["class_cond"] else None, "num_heads": values["num_heads"],
        "num_head_channels": values["num_head_channels"], "num_heads_upsample": values["num_heads_upsample"],
        "use_scale_shift_norm": values["use_scale_shift_norm"], "resblock_updown": values["resblock_updown"],
    }  # fmt: skip
    return ConsistencyFlags(unet_kwargs, "consistency" in values["training_mode"], values)


def edm_pipeline(unet: Any, parsed: ConsistencyFlags, reference_fp16_attention: bool = True):
    """The :class:`~diffusion_canon.pipelines.EDMPipeline` of a converted network and its flags."""
    from ..pipelines.pipeline_edm import SCHEDULERS, EDMPipeline

    values = parsed.values
    scheduler = SCHEDULERS[values["sampler"]](
        sigma_min=values["sigma_min"], sigma_max=values["sigma_max"], sigma_data=0.5,
        boundary_condition=parsed.distillation, clip_denoised=values["clip_denoised"],
    )
    return EDMPipeline(unet, scheduler, grid_size=values["steps"], default_timesteps=values["ts"] or None,
                       reference_fp16_attention=reference_fp16_attention)


def as_guided_diffusion_state_dict(reference: dict[str, Any]) -> dict[str, Any]:
    """The reference's attention convolutions are 2-D (``qkv`` / ``proj_out`` weights ``(C', C, 1, 1)``) where
    guided-diffusion's are 1-D ``(C', C, 1)``; the same numbers otherwise."""
    return {key: value.squeeze(-1) if key.endswith((".qkv.weight", ".proj_out.weight")) and value.ndim == 4 else value
            for key, value in reference.items()}


def convert_consistency_unet(reference: dict[str, Any], parsed: ConsistencyFlags, dtype=None):
    """A reference state dict → :class:`~diffusion_canon.models.ADMUNet2DModel`; ``ValueError`` names every key or
    shape that does not fit the flags."""
    return convert_unet(as_guided_diffusion_state_dict(reference), unet_config(parsed.unet_kwargs), legacy_qkv=False,
                        **({} if dtype is None else {"dtype": dtype}))


def convert_consistency_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    flags: str | None = None,
    preset: str | None = None,
    dtype: str = "float32",
    reference_fp16_attention: bool = True,
) -> Path:
    """A reference ``.pt`` + its ``image_sample.py`` flags (or a published checkpoint's ``preset`` name) → a
    pipeline folder (model card included); the saved weights in ``dtype``. ``reference_fp16_attention``: reproduce
    the reference's float16 attention (its samples exactly) rather than compute it in float32."""
    from ..pipelines.hub import save_pipeline_folder
    from .consistency_presets import PRESETS

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if (flags is None) == (preset is None):
        raise ValueError("pass exactly one of --flags or --preset")
    if preset is not None:
        check_choice("--preset", preset, sorted(PRESETS))
        flags = PRESETS[preset]
    parsed = consistency_flags(flags)
    unet = convert_consistency_unet(load_checkpoint(checkpoint), parsed, DTYPES[dtype])
    pipe = edm_pipeline(unet, parsed, reference_fp16_attention)
    return save_pipeline_folder(pipe, output, model_card=model_card(pipe, parsed, Path(checkpoint).name, flags, output))


def model_card(pipe: Any, parsed: ConsistencyFlags, checkpoint_name: str, flags: str, folder: str | Path) -> str:
    """The filled ``model_cards/consistency_models.md`` template."""
    from huggingface_hub import ModelCard, ModelCardData

    from ..training.model_card import template_text

    values, config = parsed.values, pipe.scheduler.config
    denoiser = ("consistency-model boundary condition" if config.boundary_condition else "EDM preconditioning") + (
        f", σ ∈ [{config.sigma_min}, {config.sigma_max}], σ_data {config.sigma_data}")
    conditional = parsed.unet_kwargs["num_classes"] is not None
    card = ModelCard.from_template(
        ModelCardData(license="mit", library_name="diffusers", pipeline_tag="unconditional-image-generation",
                      tags=["diffusion-canon", "consistency-models", values["training_mode"]]),
        template_str=template_text("consistency_models"),
        title=f"Consistency models: {Path(checkpoint_name).stem}",
        checkpoint_name=checkpoint_name, training_mode=values["training_mode"],
        unet_parameters=f"{sum(p.numel() for p in pipe.unet.parameters()):,}", denoiser=denoiser,
        scheduler=type(pipe.scheduler).__name__, grid_size=values["steps"], default_timesteps=values["ts"],
        attention=("float16 q/k/v as the reference computes them (`reference_fp16_attention`)"
                   if pipe.config.reference_fp16_attention else "float32"),
        flags=flags, folder=str(folder), call_arguments="class_labels=[207, 360], " if conditional else "batch_size=2, ",
        dataset="ImageNet 64×64" if conditional else "LSUN 256×256",
    )
    return str(card)
