"""save_pipeline_folder: folders load with <Class>.from_pretrained and with plain diffusers + trust_remote_code, in a
fresh process that never imported diffusion_canon itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from diffusers import DiffusionPipeline

from diffusion_canon.models import ADMUNet2DModel
from diffusion_canon.pipelines import ADMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ImprovedDDPMScheduler


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    unet = ADMUNet2DModel(
        sample_size=8, model_channels=32, channel_mult=(1, 2), attention_downsample_factors=(2,), num_classes=3
    )
    for parameter in unet.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    pipe = ADMPipeline(unet=unet, scheduler=ImprovedDDPMScheduler(num_train_timesteps=50, variance_type="fixed_large"))
    path = tmp_path_factory.mktemp("pipe")
    save_pipeline_folder(pipe, path, model_card="# card\n")
    return path


def sample(pipe) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    return pipe(class_labels=[2], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_folder_layout(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "ADMPipeline"]
    assert index["classifier"] == [None, None]
    assert "import ADMPipeline" in (folder / "pipeline.py").read_text()
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "README.md").read_text() == "# card\n"


def test_both_loading_routes_give_the_same_pipeline(folder):
    direct = ADMPipeline.from_pretrained(folder)
    via_diffusers = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    assert type(via_diffusers) is ADMPipeline
    assert type(via_diffusers.scheduler) is ImprovedDDPMScheduler
    assert via_diffusers.scheduler.config.variance_type == "fixed_large"
    assert torch.equal(sample(direct), sample(via_diffusers))


def test_plain_diffusers_needs_trust_remote_code(folder):
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(folder)


def test_fresh_process_loads_with_plain_diffusers(folder):
    code = (
        "import sys; from diffusers import DiffusionPipeline; "
        "assert 'diffusion_canon' not in sys.modules; "
        f"p = DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True); "
        "print(type(p).__name__, type(p.unet).__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["ADMPipeline", "ADMUNet2DModel"]


def test_class_defined_in_main_is_refused(tmp_path):
    class Local(DiffusionPipeline):
        pass

    Local.__module__ = "__main__"
    with pytest.raises(ValueError, match="importable module"):
        save_pipeline_folder(Local(), tmp_path)
