"""EDMPipeline: the reference's karras_sample through the pipeline (its RNG contract included), folders that load
both ways, the default sampler of each training mode, and bad input named."""

from __future__ import annotations

import tempfile

import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from diffusion_canon.models import ADMUNet2DModel, ADMUNet2DOutput
from diffusion_canon.pipelines import EDMPipeline, save_pipeline_folder
from diffusion_canon.schedulers import ConsistencyScheduler, KarrasHeunScheduler
from parity import assert_parity
from test_karras_parity import CASES, SAMPLING, SAMPLING_ULPS, TENSORS, model_F, scheduler_for


class SyntheticNetwork(ModelMixin, ConfigMixin):
    """The recording's synthetic F behind the U-Net interface the pipeline calls."""

    @register_to_config
    def __init__(self, sample_size: int = 8, in_channels: int = 3, num_classes: int | None = None):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))  # a module with a device and dtype

    def forward(self, sample, timestep, class_labels=None):
        return ADMUNet2DOutput(sample=model_F(sample, timestep))


@pytest.mark.parametrize("name", [n for n in SAMPLING if CASES["sampling"][n]["steps"] <= 40 and
                                  CASES["sampling"][n]["karras_sample_kwargs"]["sigma_max"] == 80])
def test_pipeline_reproduces_karras_sample(name):
    case = CASES["sampling"][name]
    kwargs = case["karras_sample_kwargs"]
    scheduler = scheduler_for(case)
    pipe = EDMPipeline(SyntheticNetwork(), scheduler, grid_size=case["steps"])
    pipe.set_progress_bar_config(disable=True)
    call = dict(sampler=kwargs["sampler"], batch_size=case["shape"][0], output_type="latent",
                generator=torch.Generator().manual_seed(case["seed"]))
    if kwargs["sampler"] in ("heun", "euler"):
        call["num_inference_steps"] = case["steps"]
    if kwargs["sampler"] == "heun":
        s_tmax = float("inf") if kwargs["s_tmax"] == "inf" else kwargs["s_tmax"]
        call.update(s_churn=kwargs["s_churn"], s_tmin=kwargs["s_tmin"], s_tmax=s_tmax, s_noise=kwargs["s_noise"])
    if kwargs["sampler"] == "multistep":
        call["timesteps"] = kwargs["ts"]
    images = pipe(**call).images
    assert_parity(images, TENSORS[f"sampling/{name}/final"], SAMPLING_ULPS, name)


def tiny_unet() -> ADMUNet2DModel:
    torch.manual_seed(0)
    unet = ADMUNet2DModel(sample_size=8, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                          attention_downsample_factors=(), num_classes=3, class_names=["a", "b", "c"])
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet


@pytest.mark.parametrize(("scheduler", "sampler", "evaluations"), [
    (KarrasHeunScheduler(), "heun", 2 * 40 - 1),
    (ConsistencyScheduler(boundary_condition=True), "onestep", 1),
])
def test_folder_loads_both_ways_and_defaults_to_the_training_modes_sampler(scheduler, sampler, evaluations):
    pipe = EDMPipeline(tiny_unet(), scheduler, grid_size=40)
    pipe.set_progress_bar_config(disable=True)
    run = lambda p: p(class_labels=["a", "c"], output_type="pt", generator=torch.Generator().manual_seed(0)).images  # noqa: E731
    images = run(pipe)
    assert pipe.num_timesteps == evaluations and images.shape == (2, 3, 8, 8)
    with tempfile.TemporaryDirectory() as folder:
        save_pipeline_folder(pipe, folder)
        for loaded in (EDMPipeline.from_pretrained(folder), DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)):
            loaded.set_progress_bar_config(disable=True)
            assert type(loaded).__name__ == "EDMPipeline" and loaded.config.grid_size == 40
            assert torch.equal(run(loaded), images)


def test_consistency_steps_and_timesteps():
    pipe = EDMPipeline(tiny_unet(), ConsistencyScheduler(boundary_condition=True), grid_size=40)
    pipe.set_progress_bar_config(disable=True)
    pipe(class_labels=[0], num_inference_steps=3, output_type="latent")
    assert pipe.num_timesteps == 3  # three denoising steps, evenly spread over the grid
    pipe(class_labels=[0], timesteps=[0, 22, 39], output_type="latent")
    assert pipe.num_timesteps == 2
    pipe(class_labels=[0], sampler="euler", num_inference_steps=4, output_type="latent")
    assert pipe.num_timesteps == 4


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(sampler="ddim"), "sampler"),
    (dict(sampler="heun", timesteps=[0, 39]), "timesteps"),
    (dict(sampler="multistep", timesteps=[0, 30, 20]), "increase"),
    (dict(sampler="multistep", timesteps=[0, 40]), "grid"),
    (dict(sampler="multistep", timesteps=[5, 39]), "from 0"),
    (dict(sampler="onestep", num_inference_steps=2), "one step"),
    (dict(sampler="multistep", num_inference_steps=1), "onestep"),
    (dict(sampler="multistep", timesteps=[0, 20, 39], num_inference_steps=3), "disagrees"),
    (dict(sampler="euler", s_churn=1.0), "Heun"),
    (dict(sampler="heun", s_churn=-1.0), "s_churn"),
    (dict(sampler="heun", num_inference_steps=0), "num_inference_steps"),
    (dict(class_labels=None), "class_labels"),
])
def test_bad_input_is_named(kwargs, message):
    pipe = EDMPipeline(tiny_unet(), ConsistencyScheduler(boundary_condition=True), grid_size=40)
    with pytest.raises((ValueError, TypeError), match=message):
        pipe(**{"class_labels": [0], **kwargs})
