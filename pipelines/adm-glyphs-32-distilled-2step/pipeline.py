"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads EDMPipeline from
diffusion-canon (`pip install diffusion-canon`)."""

from diffusion_canon.pipelines.pipeline_edm import EDMPipeline  # noqa: F401
