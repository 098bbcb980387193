"""Checkpoint converters: openai/guided-diffusion and openai/improved-diffusion → diffusers pipeline folders."""

from .adm import convert_adm_checkpoint, convert_classifier, convert_unet, load_checkpoint
from .adm_presets import PRESETS, Preset, get_preset

__all__ = ["PRESETS", "Preset", "convert_adm_checkpoint", "convert_classifier", "convert_unet", "get_preset", "load_checkpoint"]
