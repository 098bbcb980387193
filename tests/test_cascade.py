"""CascadedPipeline: stages chain, the RNG contract (base = ADMPipeline, each SR stage = SuperResolutionPipeline with
the same generator), truncated vs non-truncated augmentation, per-stage settings, one-folder save/load, bad input."""

from __future__ import annotations

import pytest
import torch
from diffusers import DiffusionPipeline
from test_sr_pipeline import tiny_scheduler, tiny_sr_unet

from diffusion_canon.models.adm_unet import ADMUNet2DModel
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_adm import ADMPipeline
from diffusion_canon.pipelines.pipeline_cascade import CascadedPipeline
from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline
from diffusion_canon.schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler
from diffusion_canon.augmentation import noise_conditioning


def tiny_base(side: int = 4, num_classes: int | None = 3) -> ADMUNet2DModel:
    torch.manual_seed(1)
    unet = ADMUNet2DModel(sample_size=side, out_channels=6, model_channels=32, channel_mult=(1,), num_res_blocks=1,
                          attention_downsample_factors=(), num_classes=num_classes)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_(0, 0.05)
    return unet.eval()


def cascade(two_stages: bool = False, **sr_overrides) -> CascadedPipeline:
    stages = {"sr_unet_1": tiny_sr_unet(4, 8, **sr_overrides), "sr_scheduler_1": tiny_scheduler()}
    if two_stages:
        stages.update(sr_unet_2=tiny_sr_unet(8, 16, seed=2, num_classes=None), sr_scheduler_2=tiny_scheduler())
    pipe = CascadedPipeline(tiny_base(), tiny_scheduler(), **stages)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_two_stage_shapes_and_stage_images():
    out = cascade(two_stages=True)(class_labels=[0, 2], num_inference_steps=2, output_type="pt")
    assert out.images.shape == (2, 3, 16, 16)
    assert [tuple(images.shape) for images in out.stage_images] == [(2, 3, 4, 4), (2, 3, 8, 8), (2, 3, 16, 16)]
    pils = cascade()(class_labels=1, batch_size=3, num_inference_steps=2).images
    assert len(pils) == 3 and pils[0].size == (8, 8)


def test_rng_contract_equals_the_stage_pipelines_in_sequence():
    pipe = cascade()
    out = pipe(class_labels=[0, 1], num_inference_steps=3, noise_level=[20], generator=torch.Generator().manual_seed(4),
               output_type="latent")
    generator = torch.Generator().manual_seed(4)
    base = ADMPipeline(pipe.base_unet, pipe.base_scheduler)
    base.set_progress_bar_config(disable=True)
    z0 = base(class_labels=[0, 1], num_inference_steps=3, generator=generator, output_type="latent").images
    torch.testing.assert_close(out.stage_images[0], z0, rtol=0, atol=0)
    sr = SuperResolutionPipeline(pipe.sr_unet_1, pipe.sr_scheduler_1)
    sr.set_progress_bar_config(disable=True)
    x = sr(((z0 + 1) / 2).clamp(0, 1), class_labels=[0, 1], num_inference_steps=3, noise_level=20, generator=generator,
           output_type="latent").images
    torch.testing.assert_close(out.images, x, atol=1e-5, rtol=0)


def count_steps(pipe: CascadedPipeline, **kwargs) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Steps run per stage (via the step callback) and what the SR U-Net received (conditioning, levels)."""
    stage_steps, seen = [], []
    def callback(stage, step, t, tensors):  # noqa: E306
        if step == 0:
            stage_steps.append(0)
        stage_steps[-1] += 1
        return {}
    pipe.sr_unet_1.register_forward_hook(lambda module, args, out: seen.append((args[2].clone(), args[3].clone())))
    out = pipe(class_labels=[0, 1], num_inference_steps=10, callback_on_step_end=callback, output_type="latent",
               generator=torch.Generator().manual_seed(0), **kwargs)
    return stage_steps, seen, out


def test_truncated_base_stops_at_s_and_hands_over_z_s():
    pipe = cascade()
    full = ImprovedDDPMScheduler.from_config(pipe.base_scheduler.config)
    full.set_timesteps(10)
    s = 45
    steps, seen, out = count_steps(pipe, noise_level=s, truncate=True)
    # the base runs the steps at the timesteps above s (landing on s), the SR stage its full 10
    assert steps == [int((full.timesteps > s).sum()), 10]
    conditioning, levels = seen[0]
    torch.testing.assert_close(conditioning, out.stage_images[0])  # z_s itself, no re-noising, no clipping
    assert levels.tolist() == [s, s]
    steps, seen, out = count_steps(pipe, noise_level=s)  # non-truncated: base to 0, then z_s ~ q(z_s | z_0)
    assert steps == [10, 10] and seen[0][1].tolist() == [s, s]
    assert out.stage_images[0].abs().max() <= 1 and (seen[0][0] - out.stage_images[0]).abs().max() > 0.05


def test_non_truncated_renoises_with_the_generator():
    pipe = cascade()
    steps, seen, out = count_steps(pipe, noise_level=30)
    generator = torch.Generator().manual_seed(0)
    base = pipe.base
    base(class_labels=[0, 1], num_inference_steps=10, generator=generator, output_type="latent")  # advances the RNG
    torch.testing.assert_close(seen[0][0], noise_conditioning(out.stage_images[0], 30, pipe.sr_scheduler_1, generator))


def test_no_augmentation_by_default_and_per_stage_settings():
    pipe = cascade(two_stages=True)
    seen = []
    pipe.sr_unet_2.register_forward_hook(lambda module, args, out: seen.append(args[3].clone()))
    out = pipe(class_labels=[0, 1], num_inference_steps=[3, 2, 4], use_ddim=[False, True, False],
               noise_level=[None, 7], output_type="latent", generator=torch.Generator().manual_seed(0))
    assert len(seen) == 4 and all(levels.tolist() == [7, 7] for levels in seen)
    first = []
    pipe.sr_unet_1.register_forward_hook(lambda module, args, out: first.append(args[3].clone()))
    pipe(class_labels=[0, 1], num_inference_steps=2, output_type="latent")
    assert all(levels.tolist() == [0, 0] for levels in first)
    assert out.images.shape == (2, 3, 16, 16)


def test_truncation_needs_a_shared_schedule():
    pipe = cascade()
    linear = ImprovedDDPMScheduler(num_train_timesteps=100, beta_schedule="linear", variance_type="learned_range")
    mixed = CascadedPipeline(pipe.base_unet, linear, pipe.sr_unet_1, pipe.sr_scheduler_1)
    with pytest.raises(ValueError, match="share one β schedule"):
        mixed(class_labels=[0], num_inference_steps=2, noise_level=10, truncate=True)
    with pytest.raises(ValueError, match="needs a noise_level"):
        pipe(class_labels=[0], num_inference_steps=2, truncate=True)
    mixed.set_progress_bar_config(disable=True)
    assert mixed(class_labels=[0], num_inference_steps=2, noise_level=10, output_type="pt").images.shape == (1, 3, 8, 8)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"noise_level": 100}, ValueError, "noise_level must be >= 0 and < 100, got 100"),
        ({"noise_level": -3}, ValueError, "noise_level"),
        ({"noise_level": 2.5}, TypeError, "noise_level"),
        ({"num_inference_steps": [2, 2, 2]}, ValueError, "num_inference_steps lists 3 values, expected one per stage \\(2\\)"),
        ({"noise_level": [1, 2]}, ValueError, "noise_level lists 2 values"),
        ({"class_labels": None}, ValueError, "class-conditional"),
        ({"output_type": "jpg"}, ValueError, "output_type"),
    ],
)
def test_bad_call_input(kwargs, error, match):
    arguments = {"class_labels": [0, 1], "num_inference_steps": 2, **kwargs}
    with pytest.raises(error, match=match):
        cascade()(**arguments)


def test_stages_must_chain():
    base, scheduler = tiny_base(), tiny_scheduler()
    with pytest.raises(ValueError, match="stages do not chain: sr_unet_1 takes 3x5x5"):
        CascadedPipeline(base, scheduler, tiny_sr_unet(5, 10), tiny_scheduler())
    with pytest.raises(ValueError, match="stages do not chain: sr_unet_2"):
        CascadedPipeline(base, scheduler, tiny_sr_unet(4, 8), tiny_scheduler(), tiny_sr_unet(4, 16), tiny_scheduler())
    with pytest.raises(ValueError, match="stages do not chain"):
        CascadedPipeline(base, scheduler, tiny_sr_unet(4, 8, low_res_channels=1), tiny_scheduler())
    with pytest.raises(ValueError, match="given together"):
        CascadedPipeline(base, scheduler, tiny_sr_unet(4, 8), None)
    with pytest.raises(ValueError, match="filled in order"):
        CascadedPipeline(base, scheduler, tiny_sr_unet(4, 8), tiny_scheduler(), None, None, tiny_sr_unet(8, 16), tiny_scheduler())


def test_saved_as_one_folder_and_loaded_both_ways(tmp_path):
    pipe = cascade(two_stages=True)
    pipe.sr_scheduler_2 = ImprovedDDIMScheduler.from_config(pipe.sr_scheduler_2.config)
    pipe.register_modules(sr_scheduler_2=pipe.sr_scheduler_2)
    save_pipeline_folder(pipe, tmp_path / "cascade")
    assert sorted(p.name for p in (tmp_path / "cascade").iterdir() if p.is_dir()) == [
        "base_scheduler", "base_unet", "sr_scheduler_1", "sr_scheduler_2", "sr_unet_1", "sr_unet_2"]
    run = lambda p: p(class_labels=[0, 1], num_inference_steps=2, output_type="pt",  # noqa: E731
                      generator=torch.Generator().manual_seed(0)).images
    reference = run(pipe)
    for loaded in (CascadedPipeline.from_pretrained(tmp_path / "cascade"),
                   DiffusionPipeline.from_pretrained(tmp_path / "cascade", trust_remote_code=True)):
        assert type(loaded).__name__ == "CascadedPipeline" and loaded.sr_unet_3 is None
        assert isinstance(loaded.sr_scheduler_2, ImprovedDDIMScheduler)
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(run(loaded), reference)
