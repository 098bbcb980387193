"""Convert guided-diffusion / improved-diffusion checkpoints into an ``ADMPipeline`` folder.

The output folder (``model_index.json``, ``unet/``, optional ``classifier/``, ``scheduler/``, ``pipeline.py``,
``README.md``) loads with ``diffusion_canon.ADMPipeline.from_pretrained(folder)`` and with
``diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import init_empty_weights
from huggingface_hub import ModelCard, ModelCardData

from ..models.adm_classifier import ADMClassifierModel
from ..models.adm_unet import ADMUNet2DModel
from ..models.sr_unet import SuperResolutionUNet2DModel
from ..pipelines.hub import save_pipeline_folder
from ..pipelines.pipeline_adm import ADMPipeline
from ..pipelines.pipeline_super_resolution import SuperResolutionPipeline
from ..schedulers import ImprovedDDPMScheduler
from ..plain_files import UnreadableFileError, UnsafeFileError, load_plain
from ..training.model_card import template_text
from .adm_flags import classifier_config, model_flags, scheduler_config, unet_config
from .adm_presets import Preset, get_preset
from .adm_state_dict import classifier_rules, convert_state_dict, unet_rules

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A reference ``.pt`` state dict, read with ``torch.load(weights_only=True)`` (no code runs); ``ValueError``
    naming the file when it is missing, empty, truncated, not a checkpoint, or holds more than tensors."""
    if not Path(path).is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist (or is not a file)")
    if Path(path).stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty")
    try:
        state_dict = load_plain(path)
    except UnsafeFileError as error:
        raise ValueError(f"checkpoint {str(path)!r} is not a plain state dict that loads without running code "
                         f"({error})") from None
    except UnreadableFileError as error:
        raise ValueError(f"checkpoint {str(path)!r} cannot be read as a torch checkpoint (truncated or not a .pt "
                         f"file: {error})") from None
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(state_dict)


def _materialize(model_cls: type, config: dict[str, Any], state_dict: dict[str, torch.Tensor], dtype: torch.dtype):
    """Build ``model_cls(**config)`` without allocating random weights, then assign the converted tensors."""
    with init_empty_weights():
        model = model_cls(**config)
    model.load_state_dict({key: value.to(dtype) for key, value in state_dict.items()}, strict=True, assign=True)
    return model.eval()


def convert_unet(
    reference: dict[str, torch.Tensor],
    config: dict[str, Any],
    legacy_qkv: bool,
    dtype: torch.dtype = torch.float32,
) -> ADMUNet2DModel:
    """A reference U-Net state dict → :class:`ADMUNet2DModel` with ``config`` — a
    :class:`SuperResolutionUNet2DModel` without an augmentation-level embedding for upsamplers (``low_res_channels``
    set: the reference's ``SuperResModel``); ``ValueError`` names every key or shape that does not match."""
    model_cls = ADMUNet2DModel
    if config.get("low_res_channels"):
        model_cls, config = SuperResolutionUNet2DModel, {**config, "augmentation_level_embedding": False}
    with init_empty_weights():
        layout = model_cls(**config)
    converted = convert_state_dict(reference, unet_rules(layout, legacy_qkv), "U-Net checkpoint")
    return _materialize(model_cls, config, converted, dtype)


def convert_classifier(
    reference: dict[str, torch.Tensor], config: dict[str, Any], dtype: torch.dtype = torch.float32
) -> ADMClassifierModel:
    """A reference ``EncoderUNetModel`` state dict → :class:`ADMClassifierModel` with ``config``."""
    with init_empty_weights():
        layout = ADMClassifierModel(**config)
    converted = convert_state_dict(reference, classifier_rules(layout), "classifier checkpoint")
    return _materialize(ADMClassifierModel, config, converted, dtype)


def _read_class_names(path: str | Path | None) -> list[str] | None:
    """A JSON list, a JSON ``{index: name}`` object, or one name per line."""
    if path is None:
        return None
    text = Path(path).read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return [line.strip() for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        return [value[key] for key in sorted(value, key=int)]
    return list(value)


def _is_super_resolution(reference: dict[str, torch.Tensor], flags_say: bool) -> bool:
    first = reference.get("input_blocks.0.0.weight")
    return flags_say or (first is not None and first.ndim == 4 and first.shape[1] == 6)


def convert_adm_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    *,
    repo: str,
    model_flags_string: str | None = None,
    preset: str | None = None,
    classifier: str | Path | None = None,
    classifier_flags_string: str | None = None,
    class_names: Sequence[str] | str | Path | None = None,
    dtype: str = "float32",
) -> Path:
    """Convert a checkpoint (and optionally its classifier) into a pipeline folder.

    Args:
        checkpoint: the reference ``.pt`` file of the diffusion model.
        output: the folder to write.
        repo: "guided-diffusion" or "improved-diffusion" (whose flag defaults apply).
        model_flags_string: ``MODEL_FLAGS`` + ``DIFFUSION_FLAGS`` exactly as in the README (or ``preset``).
        preset: a published checkpoint's name (``adm_presets.PRESETS``) instead of the flags.
        classifier, classifier_flags_string: guided-diffusion only: the classifier ``.pt`` and its
            ``CLASSIFIER_FLAGS`` (the preset's when omitted); its ``--image_size`` defaults to the model's.
        class_names: a list of names, or a file (JSON list / ``{index: name}`` / one per line).
        dtype: "float32", "float16" or "bfloat16" for the saved weights.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if (preset is None) == (model_flags_string is None):
        raise ValueError("pass exactly one of model flags (--model-flags/--flags) or --preset")
    spec: Preset | None = get_preset(preset, repo) if preset is not None else None
    flags_string = spec.model_flags if spec is not None else model_flags_string
    if classifier is not None:
        if repo != "guided-diffusion":
            raise ValueError("classifiers exist only for guided-diffusion checkpoints")
        if classifier_flags_string is None:
            if spec is None or spec.classifier_flags is None:
                raise ValueError("--classifier needs --classifier-flags (or a preset that has a classifier)")
            classifier_flags_string = spec.classifier_flags

    reference = load_checkpoint(checkpoint)
    parsed = model_flags(flags_string, repo)
    flags_say_sr = parsed.super_resolution or (spec is not None and spec.super_resolution)
    super_resolution = _is_super_resolution(reference, flags_say_sr)
    if super_resolution and not parsed.super_resolution:
        parsed = model_flags(flags_string, repo, super_resolution=True)
    names = list(class_names) if isinstance(class_names, (list, tuple)) else _read_class_names(class_names)
    config = unet_config(parsed.unet_kwargs, super_resolution)
    if config["num_classes"] is not None:
        config["class_names"] = names
    unet = convert_unet(reference, config, parsed.legacy_qkv, DTYPES[dtype])

    classifier_model = None
    if classifier is not None:
        if "--image_size" not in classifier_flags_string:
            classifier_flags_string = f"--image_size {parsed.unet_kwargs['image_size']} {classifier_flags_string}"
        clf_config = classifier_config(classifier_flags_string)
        clf_config["class_names"] = names
        classifier_model = convert_classifier(load_checkpoint(classifier), clf_config, DTYPES[dtype])

    scheduler = ImprovedDDPMScheduler(**scheduler_config(parsed.diffusion))
    if super_resolution and classifier_model is not None:
        raise ValueError("--classifier: the checkpoint is an upsampler, and the reference guides only base models")
    if super_resolution:  # the reference's super_res_sample.py: conditioned on --small_size images
        pipeline = SuperResolutionPipeline(unet=unet, scheduler=scheduler)
    else:
        pipeline = ADMPipeline(unet=unet, scheduler=scheduler, classifier=classifier_model)
    card = model_card(
        output, repo, Path(checkpoint).name, flags_string, classifier_flags_string, spec, unet, classifier_model,
        scheduler,
    )
    return save_pipeline_folder(pipeline, output, model_card=card)


def model_card(
    output: str | Path,
    repo: str,
    checkpoint_name: str,
    flags: str,
    classifier_flags: str | None,
    spec: Preset | None,
    unet: ADMUNet2DModel,
    classifier: ADMClassifierModel | None,
    scheduler: ImprovedDDPMScheduler,
) -> str:
    """The filled ``model_cards/adm.md`` template (markdown with YAML front matter)."""
    config = scheduler.config
    guided = repo == "guided-diffusion"
    arguments = []
    if unet.config.low_res_channels:
        arguments.append("low_res_images")
    if unet.config.num_classes is not None or classifier is not None:
        arguments.append("class_labels=[207, 360]")
    else:
        arguments.append("batch_size=2")
    if classifier is not None:
        arguments.append(f"classifier_scale={spec.classifier_scale if spec and spec.classifier_scale else 1.0}")
    card = ModelCard.from_template(
        ModelCardData(
            license="mit",
            library_name="diffusers",
            tags=["diffusion-canon", "adm", "image-generation", repo],
            pipeline_tag="unconditional-image-generation",
        ),
        template_str=template_text("adm"),
        title=f"ADM: {spec.description}" if spec else f"ADM checkpoint {checkpoint_name}",
        description=spec.description if spec else "A diffusion model",
        repo=repo,
        checkpoint_name=checkpoint_name,
        url=spec.url if spec else f"https://github.com/openai/{repo}",
        has_classifier=classifier is not None,
        unet_parameters=f"{sum(p.numel() for p in unet.parameters()):,}",
        classifier_parameters=f"{sum(p.numel() for p in classifier.parameters()):,}" if classifier is not None else "",
        scheduler_summary=(
            f"T={config.num_train_timesteps}, {config.beta_schedule} betas, variance {config.variance_type}, "
            f"rescale_timesteps={config.rescale_timesteps}"
        ),
        model_flags=flags,
        classifier_flags=classifier_flags,
        repo_or_folder=str(output),
        call_arguments=", ".join(arguments),
        paper="Dhariwal & Nichol 2021, Diffusion Models Beat GANs on Image Synthesis"
        if guided
        else "Nichol & Dhariwal 2021, Improved Denoising Diffusion Probabilistic Models",
        dataset="ImageNet / LSUN" if guided else "ImageNet / CIFAR-10 / LSUN",
    )
    return str(card)
