"""Diffusion pipelines (diffusers ``DiffusionPipeline`` subclasses) and saving them as loadable folders."""

from .hub import save_pipeline_folder
from .pipeline_adm import ADMPipeline

__all__ = ["ADMPipeline", "save_pipeline_folder"]
