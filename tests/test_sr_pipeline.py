"""SuperResolutionUNet2DModel and SuperResolutionPipeline: the ADM super-resolution layout, the augmentation-level
embedding, inference-time augmentation only when asked, the RNG contract, loading, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from diffusion_canon.models.adm_unet import ADMUNet2DModel
from diffusion_canon.models.sr_unet import SuperResolutionUNet2DModel
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_adm import StageSampling
from diffusion_canon.pipelines.pipeline_super_resolution import SuperResolutionPipeline
from diffusion_canon.schedulers import ImprovedDDPMScheduler
from diffusion_canon.augmentation import noise_conditioning

TINY = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample_factors=(2,))


def tiny_sr_unet(low: int = 4, high: int = 8, num_classes: int | None = 3, seed: int = 0, **overrides) -> SuperResolutionUNet2DModel:
    torch.manual_seed(seed)
    unet = SuperResolutionUNet2DModel(sample_size=high, low_res_sample_size=low, num_classes=num_classes, **{**TINY, **overrides})
    with torch.no_grad():  # random weights everywhere (the zero-initialised output layers would hide bugs)
        for p in unet.parameters():
            p.normal_(0, 0.05)
    return unet.eval()


def tiny_scheduler(**overrides) -> ImprovedDDPMScheduler:
    return ImprovedDDPMScheduler(num_train_timesteps=100, beta_schedule="cosine", variance_type="learned_range", **overrides)


def sr_pipeline(**unet_overrides) -> SuperResolutionPipeline:
    pipe = SuperResolutionPipeline(tiny_sr_unet(**unet_overrides), tiny_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def low_res_images(n: int = 2, side: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(7))


def test_fresh_level_embedding_reproduces_the_adm_super_resolution_model():
    """With its zero-initialised output layer the level embedding adds nothing, and the rest is ADM's SR layout
    (guided-diffusion SuperResModel): the same weights in an ADMUNet2DModel(low_res_channels=3) give the same output."""
    torch.manual_seed(0)
    sr = SuperResolutionUNet2DModel(sample_size=8, low_res_sample_size=4, num_classes=3, **TINY).eval()
    with torch.no_grad():
        for name, p in sr.named_parameters():
            if not name.startswith("augmentation_embedding.linear_2"):
                p.normal_(0, 0.05)
    adm = ADMUNet2DModel(sample_size=8, in_channels=3, out_channels=6, low_res_channels=3, num_classes=3,
                         use_scale_shift_norm=True, resblock_updown=True, **TINY).eval()
    missing, unexpected = adm.load_state_dict(sr.state_dict(), strict=False)
    assert not missing and all(key.startswith("augmentation_embedding.") for key in unexpected)
    x, low, t, y = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4), torch.tensor([3, 70]), torch.tensor([0, 2])
    with torch.no_grad():
        ours = sr(x, t, low, torch.tensor([10, 50]), y).sample
        torch.testing.assert_close(ours, adm(x, t, y, low_res=low).sample)
        assert ours.shape == (2, 6, 8, 8)


def test_the_augmentation_level_reaches_the_network():
    unet = tiny_sr_unet()
    x, low, y = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4), torch.tensor([0, 1])
    with torch.no_grad():
        a = unet(x, 5, low, torch.tensor([0, 0]), y).sample
        b = unet(x, 5, low, torch.tensor([0, 60]), y).sample
        torch.testing.assert_close(a, unet(x, 5, low, None, y).sample)
    torch.testing.assert_close(a[0], b[0])
    assert (a[1] - b[1]).abs().max() > 1e-3
    plain = tiny_sr_unet(augmentation_level_embedding=False)
    assert plain.augmentation_embedding is None
    with torch.no_grad():
        torch.testing.assert_close(plain(x, 5, low, 0, y).sample, plain(x, 5, low, 60, y).sample)


def test_model_bad_input():
    unet = tiny_sr_unet()
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="low_res is required"):
        unet(x, 5, None, 0, y)
    with pytest.raises(ValueError, match="expected \\[2, 3, h, w\\]"):
        unet(x, 5, torch.randn(2, 1, 4, 4), 0, y)
    with pytest.raises(ValueError, match="class_labels"):
        unet(x, 5, torch.randn(2, 3, 4, 4), 0, None)
    with pytest.raises(ValueError, match="low_res_channels"):
        SuperResolutionUNet2DModel(low_res_channels=0, **TINY)


@pytest.mark.parametrize("output_type, shape", [("pt", (2, 3, 8, 8)), ("np", (2, 8, 8, 3)), ("latent", (2, 3, 8, 8))])
def test_output_types_and_shapes(output_type, shape):
    images = sr_pipeline()(low_res_images(), class_labels=[0, 2], num_inference_steps=3, output_type=output_type).images
    assert tuple(images.shape) == shape


def test_pil_and_numpy_inputs_match_the_tensor():
    pipe, low = sr_pipeline(), low_res_images()
    quantised = (low * 255).round() / 255
    pils = pipe.numpy_to_pil(quantised.permute(0, 2, 3, 1).numpy())
    run = lambda images: pipe(images, class_labels=[0, 1], num_inference_steps=3, output_type="pt",  # noqa: E731
                              generator=torch.Generator().manual_seed(3)).images
    reference = run(quantised)
    torch.testing.assert_close(run(pils), reference, atol=1e-5, rtol=0)
    torch.testing.assert_close(run(quantised.permute(0, 2, 3, 1).numpy()), reference, atol=1e-5, rtol=0)
    assert len(pipe(pils[0], class_labels=1, num_inference_steps=2).images) == 1


def test_no_augmentation_unless_asked():
    """By default the network sees the conditioning unchanged at level 0; with noise_level=s it sees level s and the
    conditioning noised with the generator's first draw (the RNG contract)."""
    pipe, low = sr_pipeline(), low_res_images()
    seen = []
    pipe.unet.register_forward_hook(lambda module, args, out: seen.append((args[2].clone(), args[3].clone())))
    pipe(low, class_labels=[0, 1], num_inference_steps=2, output_type="pt")
    torch.testing.assert_close(seen[0][0], low * 2 - 1)
    assert seen[0][1].tolist() == [0, 0]
    seen.clear()
    out = pipe(low, class_labels=[0, 1], num_inference_steps=2, noise_level=40, output_type="latent",
               generator=torch.Generator().manual_seed(5)).images
    generator = torch.Generator().manual_seed(5)
    expected = noise_conditioning(low * 2 - 1, 40, pipe.scheduler, generator)
    torch.testing.assert_close(seen[0][0], expected)
    assert seen[0][1].tolist() == [40, 40]
    manual = pipe.sample(expected, torch.tensor([40, 40]), torch.tensor([0, 1]), StageSampling(num_inference_steps=2),
                         generator=generator)
    torch.testing.assert_close(out, manual)


def test_generator_determinism():
    pipe, low = sr_pipeline(), low_res_images()
    run = lambda seed: pipe(low, class_labels=[0, 1], num_inference_steps=3, output_type="pt",  # noqa: E731
                            generator=torch.Generator().manual_seed(seed)).images
    torch.testing.assert_close(run(0), run(0), rtol=0, atol=0)
    assert (run(0) - run(1)).abs().max() > 1e-3


def test_blur_at_inference_changes_the_conditioning():
    pipe, low = sr_pipeline(), low_res_images()
    seen = []
    pipe.unet.register_forward_hook(lambda module, args, out: seen.append(args[2].clone()))
    pipe(low, class_labels=[0, 1], num_inference_steps=1, blur_sigma=0.5)
    assert 1e-3 < (seen[0] - (low * 2 - 1)).abs().max() < 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"low_res": torch.rand(2, 3, 5, 5)}, "5x5, this stage expects 4x4"),
        ({"low_res": torch.rand(2, 1, 4, 4)}, "1 channels, this stage expects 3"),
        ({"low_res": torch.rand(2, 3, 4, 4) + 1}, "values must lie in \\[0, 1\\]"),
        ({"noise_level": 100}, "noise_level must be >= 0 and < 100, got 100"),
        ({"noise_level": -1}, "noise_level"),
        ({"class_labels": [0, 1, 2]}, "class_labels"),
        ({"class_labels": [0, 5]}, "out of range"),
        ({"class_labels": None}, "class-conditional"),
        ({"output_type": "jpg"}, "output_type"),
        ({"blur_sigma": -0.5}, "sigma"),
    ],
)
def test_bad_input(kwargs, match):
    arguments = {"low_res": low_res_images(), "class_labels": [0, 1], "num_inference_steps": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sr_pipeline()(**arguments)


def test_save_and_load_both_routes(tmp_path):
    pipe, low = sr_pipeline(), low_res_images()
    save_pipeline_folder(pipe, tmp_path / "sr")
    run = lambda p: p(low, class_labels=[0, 1], num_inference_steps=2, output_type="pt",  # noqa: E731
                      generator=torch.Generator().manual_seed(0)).images
    reference = run(pipe)
    for loaded in (SuperResolutionPipeline.from_pretrained(tmp_path / "sr"),
                   DiffusionPipeline.from_pretrained(tmp_path / "sr", trust_remote_code=True)):
        assert type(loaded).__name__ == "SuperResolutionPipeline"
        assert loaded.unet.config.low_res_sample_size == 4
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(run(loaded), reference)
    assert np.isfinite(reference.numpy()).all()


def test_classifier_free_guidance_mixes_conditional_and_null_passes():
    """ε̃ = ε(∅) + w·(ε(y) − ε(∅)) per row, the learned variance from the conditional pass, for a batch of 2."""
    pipe = sr_pipeline(null_class_embedding=True)
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([5, 5])
    low, level, labels = low_res_images() * 2 - 1, torch.tensor([0, 0]), torch.tensor([1, 2])
    pipe.begin_sampling(3.0)
    guided = pipe.model(labels, low, level)(x, t)
    cond = pipe.unet(x, t, low, level, labels).sample
    null = pipe.unet(x, t, low, level, torch.full_like(labels, 3)).sample
    torch.testing.assert_close(guided[:, :3], null[:, :3] + 3.0 * (cond[:, :3] - null[:, :3]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(guided[:, 3:], cond[:, 3:], rtol=1e-5, atol=1e-5)
