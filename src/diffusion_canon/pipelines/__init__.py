"""Diffusion pipelines (diffusers ``DiffusionPipeline`` subclasses) and saving them as loadable folders."""

from .hub import save_pipeline_folder
from .pipeline_adm import ADMPipeline
from .pipeline_cascade import CascadedPipeline, CascadedPipelineOutput
from .pipeline_edm import EDMPipeline
from .pipeline_super_resolution import SuperResolutionPipeline
from .pipeline_unclip import UnCLIPPipeline, UnCLIPPipelineOutput
from .pipeline_unclip_prior import UnCLIPPriorPipeline, UnCLIPPriorPipelineOutput, default_prior_scheduler

__all__ = [
    "ADMPipeline",
    "CascadedPipeline",
    "CascadedPipelineOutput",
    "EDMPipeline",
    "SuperResolutionPipeline",
    "UnCLIPPipeline",
    "UnCLIPPipelineOutput",
    "UnCLIPPriorPipeline",
    "UnCLIPPriorPipelineOutput",
    "default_prior_scheduler",
    "save_pipeline_folder",
]
