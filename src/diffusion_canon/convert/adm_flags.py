"""The command-line flags of openai/guided-diffusion and openai/improved-diffusion, turned into our configs.

A flags string (``MODEL_FLAGS`` + ``DIFFUSION_FLAGS`` exactly as in either README) is parsed against that repository's
flag defaults, then mapped in two steps: flags → the reference ``UNetModel`` / ``EncoderUNetModel`` constructor
arguments (resolution-dependent ``channel_mult`` tables, ``--attention_resolutions`` as resolutions → downsample
factors) → our :class:`~diffusion_canon.models.ADMUNet2DModel` / :class:`~diffusion_canon.models.ADMClassifierModel`
configs and an ``ImprovedDDPMScheduler`` config.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

REPOS = ("guided-diffusion", "improved-diffusion")
IMAGENET_CLASSES = 1000

_DIFFUSION_DEFAULTS = {
    "learn_sigma": False,
    "diffusion_steps": 1000,
    "noise_schedule": "linear",
    "timestep_respacing": "",
    "use_kl": False,
    "predict_xstart": False,
    "rescale_timesteps": False,
    "rescale_learned_sigmas": False,
}
_MODEL_DEFAULTS = {
    "image_size": 64,
    "num_channels": 128,
    "num_res_blocks": 2,
    "num_heads": 4,
    "num_heads_upsample": -1,
    "attention_resolutions": "16,8",
    "dropout": 0.0,
    "class_cond": False,
    "use_checkpoint": False,
    "use_scale_shift_norm": True,
    "large_size": 256,  # super-resolution models only
    "small_size": 64,
}
# flag defaults of each repository (the values their script_util.py documents)
FLAG_DEFAULTS: dict[str, dict[str, Any]] = {
    "guided-diffusion": {
        **_MODEL_DEFAULTS,
        **_DIFFUSION_DEFAULTS,
        "num_head_channels": -1,
        "channel_mult": "",
        "resblock_updown": False,
        "use_fp16": False,
        "use_new_attention_order": False,
    },
    "improved-diffusion": {
        **_MODEL_DEFAULTS,
        **_DIFFUSION_DEFAULTS,
        "sigma_small": False,
        "rescale_timesteps": True,
        "rescale_learned_sigmas": True,
    },
}
CLASSIFIER_FLAG_DEFAULTS: dict[str, Any] = {
    "image_size": 64,
    "classifier_use_fp16": False,
    "classifier_width": 128,
    "classifier_depth": 2,
    "classifier_attention_resolutions": "32,16,8",
    "classifier_use_scale_shift_norm": True,
    "classifier_resblock_updown": True,
    "classifier_pool": "attention",
}
# sampling-script flags that may appear next to the model flags in a README command; accepted and ignored
SAMPLING_FLAGS = {
    "classifier_scale", "batch_size", "num_samples", "use_ddim", "clip_denoised", "model_path", "classifier_path",
    "base_samples",
}  # fmt: skip

# default channel_mult per image side, per repository (base models and classifiers / super-resolution models)
_GUIDED_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
_GUIDED_SR_MULT = {512: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}
_IMPROVED_MULT = {256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4), 32: (1, 2, 2, 2)}
_IMPROVED_SR_MULT = {256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("yes", "true", "t", "y", "1"):
        return True
    if lowered in ("no", "false", "f", "n", "0"):
        return False
    raise ValueError(f"flag --{name} expects a boolean (True/False), got {value!r}")


def parse_flags(flags: str, defaults: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Parse ``"--name value --other=value ..."`` against ``defaults``.

    Returns ``(values, given)``: every default, overridden by the flags (typed like the default), and the set of flag
    names that appeared. Unknown flags raise ``ValueError`` naming them and listing the known ones.
    """
    values = dict(defaults)
    given: set[str] = set()
    tokens = shlex.split(flags)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            raise ValueError(f"expected a flag starting with '--' in {flags!r}, got {token!r}")
        name, _, value = token[2:].partition("=")
        if not _:
            if index + 1 >= len(tokens):
                raise ValueError(f"flag --{name} has no value in {flags!r}")
            index += 1
            value = tokens[index]
        index += 1
        if name in SAMPLING_FLAGS:
            continue
        if name not in defaults:
            raise ValueError(f"unknown flag --{name}; known flags: {', '.join('--' + k for k in sorted(defaults))}")
        default = defaults[name]
        try:
            if isinstance(default, bool):
                values[name] = _parse_bool(name, value)
            elif isinstance(default, int):
                values[name] = int(value)
            elif isinstance(default, float):
                values[name] = float(value)
            else:
                values[name] = value
        except ValueError as error:
            raise ValueError(f"flag --{name}: cannot parse {value!r} ({error})") from None
        given.add(name)
    return values, given


def _attention_factors(resolutions: str, image_size: int) -> list[int]:
    """``"32,16,8"`` (resolutions) at ``image_size`` → downsample factors ``[image_size // r, ...]``."""
    return [image_size // int(resolution) for resolution in resolutions.split(",") if resolution.strip()]


def _channel_mult(table: dict[int, tuple[float, ...]], image_size: int, what: str) -> tuple[float, ...]:
    if image_size not in table:
        raise ValueError(
            f"{what}: no default channel_mult for image size {image_size} (known: {sorted(table)}); "
            "pass --channel_mult explicitly (guided-diffusion flags only)"
        )
    return table[image_size]


@dataclass
class ModelFlags:
    """A parsed model flags string: the reference constructor arguments plus what the converter needs."""

    unet_kwargs: dict[str, Any]  # the reference UNetModel constructor arguments
    diffusion: dict[str, Any]  # the diffusion flags (steps, schedule, learned sigma, ...)
    super_resolution: bool
    legacy_qkv: bool  # attention q/k/v rows laid out per head (QKVAttentionLegacy)


def model_flags(flags: str, repo: str, super_resolution: bool | None = None) -> ModelFlags:
    """Parse a ``MODEL_FLAGS`` (+ ``DIFFUSION_FLAGS``) string of ``repo`` ("guided-diffusion"/"improved-diffusion").

    ``super_resolution``: whether the checkpoint is an upsampler (``super_res_train.py``). ``None`` = only when
    ``--large_size``/``--small_size`` appear in the flags.
    """
    if repo not in REPOS:
        raise ValueError(f"repo must be one of {REPOS}, got {repo!r}")
    values, given = parse_flags(flags, FLAG_DEFAULTS[repo])
    if super_resolution is None:
        super_resolution = bool(given & {"large_size", "small_size"})
    guided = repo == "guided-diffusion"
    image_size = values["large_size"] if super_resolution else values["image_size"]
    if guided and values["channel_mult"]:
        channel_mult = tuple(int(mult) for mult in values["channel_mult"].split(","))
    elif super_resolution:
        channel_mult = _channel_mult(_GUIDED_SR_MULT if guided else _IMPROVED_SR_MULT, image_size, repo)
    else:
        channel_mult = _channel_mult(_GUIDED_MULT if guided else _IMPROVED_MULT, image_size, repo)
    unet_kwargs = {
        "image_size": image_size,
        "in_channels": 3,
        "model_channels": values["num_channels"],
        "out_channels": 6 if values["learn_sigma"] else 3,
        "num_res_blocks": values["num_res_blocks"],
        "attention_resolutions": _attention_factors(values["attention_resolutions"], image_size),
        "dropout": values["dropout"],
        "channel_mult": list(channel_mult),
        "num_classes": IMAGENET_CLASSES if values["class_cond"] else None,
        "num_heads": values["num_heads"],
        "num_head_channels": values.get("num_head_channels", -1),
        "num_heads_upsample": values["num_heads_upsample"],
        "use_scale_shift_norm": values["use_scale_shift_norm"],
        "resblock_updown": values.get("resblock_updown", False),
    }
    diffusion = {key: values[key] for key in _DIFFUSION_DEFAULTS}
    diffusion["sigma_small"] = values.get("sigma_small", False)
    return ModelFlags(unet_kwargs, diffusion, super_resolution, not values.get("use_new_attention_order", False))


def unet_config(unet_kwargs: dict[str, Any], super_resolution: bool = False) -> dict[str, Any]:
    """Reference ``UNetModel`` constructor arguments → an :class:`ADMUNet2DModel` config."""
    num_head_channels = unet_kwargs.get("num_head_channels", -1)
    num_heads_upsample = unet_kwargs.get("num_heads_upsample", -1)
    in_channels = unet_kwargs.get("in_channels", 3)
    return {
        "sample_size": unet_kwargs.get("image_size"),
        "in_channels": in_channels,
        "out_channels": unet_kwargs["out_channels"],
        "model_channels": unet_kwargs["model_channels"],
        "num_res_blocks": unet_kwargs["num_res_blocks"],
        "attention_downsample_factors": sorted(set(unet_kwargs["attention_resolutions"])),
        "dropout": float(unet_kwargs.get("dropout", 0.0)),
        "channel_mult": list(unet_kwargs.get("channel_mult", (1, 2, 4, 8))),
        "conv_resample": unet_kwargs.get("conv_resample", True),
        "num_classes": unet_kwargs.get("num_classes"),
        "num_heads": unet_kwargs.get("num_heads", 1),
        "num_head_channels": None if num_head_channels == -1 else num_head_channels,
        "num_heads_upsample": None if num_heads_upsample == -1 else num_heads_upsample,
        "use_scale_shift_norm": unet_kwargs.get("use_scale_shift_norm", False),
        "resblock_updown": unet_kwargs.get("resblock_updown", False),
        "low_res_channels": in_channels if super_resolution else 0,
    }


def classifier_config(flags: str) -> dict[str, Any]:
    """A guided-diffusion ``CLASSIFIER_FLAGS`` string → an :class:`ADMClassifierModel` config.

    As the reference ``create_classifier``: 1000 classes, 64-channel heads, channel_mult from the image size.
    """
    values, _ = parse_flags(flags, {**CLASSIFIER_FLAG_DEFAULTS, **_DIFFUSION_DEFAULTS})
    image_size = values["image_size"]
    return {
        "sample_size": image_size,
        "in_channels": 3,
        "num_classes": IMAGENET_CLASSES,
        "model_channels": values["classifier_width"],
        "num_res_blocks": values["classifier_depth"],
        "attention_downsample_factors": sorted(
            set(_attention_factors(values["classifier_attention_resolutions"], image_size))
        ),
        "channel_mult": list(_channel_mult(_GUIDED_MULT, image_size, "classifier")),
        "num_heads": 1,
        "num_head_channels": 64,
        "use_scale_shift_norm": values["classifier_use_scale_shift_norm"],
        "resblock_updown": values["classifier_resblock_updown"],
        "pool": values["classifier_pool"],
    }


def scheduler_config(diffusion: dict[str, Any]) -> dict[str, Any]:
    """The diffusion flags → an ``ImprovedDDPMScheduler`` config (respacing is chosen at sampling time)."""
    if diffusion["learn_sigma"]:
        variance_type = "learned_range"
    else:
        variance_type = "fixed_small" if diffusion.get("sigma_small") else "fixed_large"
    if diffusion["noise_schedule"] not in ("linear", "cosine"):
        raise ValueError(f"--noise_schedule must be linear or cosine, got {diffusion['noise_schedule']!r}")
    return {
        "num_train_timesteps": diffusion["diffusion_steps"],
        "beta_schedule": diffusion["noise_schedule"],
        "variance_type": variance_type,
        "prediction_type": "sample" if diffusion["predict_xstart"] else "epsilon",
        "clip_sample": True,
        "rescale_timesteps": diffusion["rescale_timesteps"],
    }
