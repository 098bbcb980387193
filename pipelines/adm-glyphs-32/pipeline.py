"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads ADMPipeline from
diffusion-canon (`pip install diffusion-canon`)."""

from diffusion_canon.pipelines.pipeline_adm import ADMPipeline  # noqa: F401
