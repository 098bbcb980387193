"""diffusion-canon: the classic diffusion papers, implemented exactly, as a diffusers extension.

The public API is imported lazily so that `import diffusion_canon` (and the CLI) start fast; every name listed in
``_EXPORTS`` is importable from the top level, e.g. ``from diffusion_canon import load_glyphs``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .dependencies import check_dependencies

__version__ = "0.1.0"

check_dependencies()  # a dependency outside its supported range: one clear message now, not a deep traceback later

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
    "load_glyphs": ".data.glyphs",
    "CHARACTERS": ".data.glyphs",
    "FONTS": ".data.glyphs",
    "HELD_OUT_FONTS": ".data.glyphs",
    "HELD_OUT_STYLES": ".data.glyphs",
    "STYLES": ".data.glyphs",
    "COLORS": ".data.glyphs",
    "load_image_folder": ".data.image_folder",
    "cfid": ".evaluation.frechet",
    "frechet_distance": ".evaluation.frechet",
    "class_accuracy": ".evaluation.glyph_classifier",
    "predict_glyphs": ".evaluation.glyph_classifier",
    "load_glyph_classifier": ".evaluation.glyph_classifier",
    "GlyphClassifier": ".evaluation.glyph_classifier",
    "ImprovedDDPMScheduler": ".schedulers",
    "ImprovedDDIMScheduler": ".schedulers",
    "GaussianDiffusionSchedule": ".schedulers",
    "space_timesteps": ".schedulers",
    "ADMUNet2DModel": ".models",
    "ADMClassifierModel": ".models",
    "ADMPipeline": ".pipelines",
    "EDMPipeline": ".pipelines",
    "KarrasHeunScheduler": ".schedulers",
    "KarrasEulerScheduler": ".schedulers",
    "ProgressiveDistillationScheduler": ".schedulers",
    "ConsistencyScheduler": ".schedulers",
    "save_pipeline_folder": ".pipelines",
    "convert_adm_checkpoint": ".convert",
    "UnCLIPPipeline": ".pipelines.pipeline_unclip",
    "UnCLIPPipelineOutput": ".pipelines.pipeline_unclip",
    "UnCLIPDecoderUNet2DModel": ".models.unclip_decoder",
    "TrainingRun": ".training",
    "training_parser": ".training",
    "parse_training_args": ".training",
    "write_model_card": ".training",
    "load_sd_components": ".finetune",
    "save_tiny_sd_base": ".finetune",
    "SuperResolutionUNet2DModel": ".models.sr_unet",
    "SuperResolutionPipeline": ".pipelines.pipeline_super_resolution",
    "CascadedPipeline": ".pipelines.pipeline_cascade",
    "CascadedPipelineOutput": ".pipelines.pipeline_cascade",
    "ConditioningAugmentation": ".augmentation",
    "noise_conditioning": ".augmentation",
    "gaussian_blur": ".augmentation",
    "build_glyph_tokenizer": ".data.tokenizer",
    "UnCLIPPriorTransformer": ".models.unclip_prior",
    "UnCLIPPriorPipeline": ".pipelines.pipeline_unclip_prior",
    "glyph_clip_config": ".clip.glyph_clip",
    "encode_prompts": ".clip.encoding",
    "encode_images": ".clip.encoding",
    "encode_pairs": ".clip.encoding",
    "train_glyph_clip": ".clip.training",
    "text_to_image_retrieval": ".clip.training",
    "training_losses": ".training.losses",
    "nll_bits_per_dim": ".training.losses",
    "UniformSampler": ".training.timestep_samplers",
    "LossSecondMomentResampler": ".training.timestep_samplers",
    "create_named_schedule_sampler": ".training.timestep_samplers",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffusion_canon' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
