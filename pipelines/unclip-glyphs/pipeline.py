"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads UnCLIPPipeline from
diffusion-canon (`pip install diffusion-canon`)."""

from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline  # noqa: F401
