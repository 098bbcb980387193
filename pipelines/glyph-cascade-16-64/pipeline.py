"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads CascadedPipeline from
diffusion-canon (`pip install diffusion-canon`)."""

from diffusion_canon.pipelines.pipeline_cascade import CascadedPipeline  # noqa: F401
