"""ADMPipeline: sampling parity with guided-/improved-diffusion's p_sample_loop / ddim_sample_loop (with and without
classifier guidance), the RNG contract, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from parity import assert_parity
from test_adm_models import REPO, case_classifier, case_unet, reference_cases, reference_tensors, tiny_unet

from diffusion_canon.convert.adm_flags import model_flags, scheduler_config
from diffusion_canon.models import ADMClassifierModel
from diffusion_canon.pipelines import ADMPipeline
from diffusion_canon.schedulers import ImprovedDDPMScheduler

SAMPLE_CASES = [name for name, case in reference_cases().items() if case["kind"] == "sample"]


# float32 spacings of the largest value compared (tests/parity.py): twice the measured spread of whole guided and
# unguided ADM sampling runs (244 ulps of 1.0, i.e. 2.9e-5 in [0, 1])
SAMPLING_ULPS = 500


def case_pipeline(case: dict) -> ADMPipeline:
    parsed = model_flags(case["flags"], REPO[case["repo"]])
    scheduler = ImprovedDDPMScheduler(**scheduler_config(parsed.diffusion))
    classifier = None
    if "classifier_flags" in case:
        classifier = case_classifier(case["classifier_flags"], case["classifier_keys"], case["classifier_seed"])
    pipe = ADMPipeline(unet=case_unet(case), scheduler=scheduler, classifier=classifier)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("name", SAMPLE_CASES)
def test_sampling_matches_reference_loop(name):
    case = reference_cases()[name]
    pipe = case_pipeline(case)
    images = pipe(
        class_labels=case["labels"],
        batch_size=2,
        timestep_respacing=case["timestep_respacing"],
        use_ddim=case["use_ddim"],
        eta=case["eta"],
        classifier_scale=case["classifier_scale"],
        generator=torch.Generator().manual_seed(case["noise_seed"]),
        output_type="pt",
    ).images
    stride = case["stride"]
    expected = (reference_tensors()[f"{name}.sample"] + 1) / 2
    assert images.shape[-1] == expected.shape[-1] * stride
    assert_parity(images[..., ::stride, ::stride], expected, SAMPLING_ULPS, name)
    interior = ((expected > 0) & (expected < 1)).float().mean()
    assert interior > 0.2  # enough unclipped values for the comparison to mean something


def test_classifier_guidance_changes_the_samples():
    """The guided case differs from the unguided one with the same seed (so guidance is really applied)."""
    guided = reference_tensors()["sample_ddpm_guided.sample"]
    plain = reference_tensors()["sample_ddpm.sample"]
    assert (guided - plain).abs().max() > 0.05


def small_pipeline(classifier: bool = False, **unet_overrides) -> ADMPipeline:
    unet = tiny_unet(**unet_overrides)
    scheduler = ImprovedDDPMScheduler(num_train_timesteps=20, beta_schedule="cosine", variance_type="learned_range")
    clf = None
    if classifier:
        torch.manual_seed(1)
        clf = ADMClassifierModel(
            sample_size=16, num_classes=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
            attention_downsample_factors=(2,), num_head_channels=16,
        )
    pipe = ADMPipeline(unet=unet, scheduler=scheduler, classifier=clf)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_output_types_and_names():
    pipe = small_pipeline(class_names=["zero", "one", "two", "three"])
    kwargs = dict(num_inference_steps=3)
    pt = pipe(class_labels=["two", 1], generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    as_np = pipe(class_labels=[2, "one"], generator=torch.Generator().manual_seed(0), output_type="np", **kwargs).images
    assert pt.shape == (2, 3, 16, 16)
    assert isinstance(as_np, np.ndarray) and as_np.shape == (2, 16, 16, 3)
    assert as_np.min() >= 0 and as_np.max() <= 1
    np.testing.assert_allclose(as_np, pt.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    assert pipe.get_label_ids(["three", "zero"]) == [3, 0]
    pil = pipe(class_labels=0, batch_size=3, generator=torch.Generator().manual_seed(0), **kwargs).images
    assert len(pil) == 3 and pil[0].size == (16, 16)


def test_rng_contract_latents_first():
    """Passing the first draw of the generator as latents, and the rest of the stream as the generator, reproduces
    the run: the initial noise is the first draw of the sample's shape."""
    pipe = small_pipeline()
    run = lambda **kw: pipe(class_labels=[1, 2], num_inference_steps=4, output_type="pt", **kw).images  # noqa: E731
    whole = run(generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    latents = torch.randn(2, 3, 16, 16, generator=generator)
    assert torch.equal(run(generator=generator, latents=latents), whole)


def test_callback_can_replace_latents_and_sees_every_step():
    pipe = small_pipeline()
    seen = []

    def callback(pipeline, step, timestep, tensors):
        seen.append((step, int(timestep)))
        return {"latents": torch.zeros_like(tensors["latents"])} if step == 3 else {}

    images = pipe(class_labels=[0], num_inference_steps=4, output_type="latent", callback_on_step_end=callback).images
    assert [step for step, _ in seen] == [0, 1, 2, 3]
    assert [t for _, t in seen] == sorted((t for _, t in seen), reverse=True)
    assert torch.equal(images, torch.zeros(1, 3, 16, 16))


def test_classifier_free_guidance():
    pipe = small_pipeline(null_class_embedding=True)
    run = lambda scale: pipe(  # noqa: E731
        class_labels=[1], num_inference_steps=3, guidance_scale=scale, output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert torch.equal(run(None), run(1.0))
    assert (run(3.0) - run(None)).abs().max() > 1e-3


def guided_output(pipe, x, t, labels, scale):
    pipe.begin_sampling(scale)
    return pipe.model(labels)(x, t)


def test_classifier_free_guidance_batch_equals_rows_alone():
    pipe = small_pipeline(null_class_embedding=True)
    x, t, labels = torch.randn(2, 3, 16, 16), torch.tensor([5, 5]), torch.tensor([1, 2])
    batched = guided_output(pipe, x, t, labels, 2.5)
    for i in range(2):
        alone = guided_output(pipe, x[i:i + 1], t[i:i + 1], labels[i:i + 1], 2.5)
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-5, atol=1e-5)


def test_guidance_scale_zero_is_the_null_label_prediction():
    """w = 0 gives ε(x_t, ∅); the learned variance comes from the conditional pass."""
    pipe = small_pipeline(null_class_embedding=True)
    x = torch.randn(1, 3, 16, 16)
    t = torch.tensor([5])
    guided = guided_output(pipe, x, t, torch.tensor([2]), 0.0)
    null = pipe.unet(x, t, torch.tensor([4])).sample
    cond = pipe.unet(x, t, torch.tensor([2])).sample
    torch.testing.assert_close(guided[:, :3], null[:, :3])
    torch.testing.assert_close(guided[:, 3:], cond[:, 3:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(class_labels=[4]), "out of range"),
        (dict(class_labels=["nine"]), "unknown class name"),
        (dict(class_labels=[1], classifier_scale=1.0), "needs a classifier"),
        (dict(class_labels=[1], latents=torch.randn(1, 3, 8, 8)), "latents have shape"),
        (dict(), "pass class_labels"),
        (dict(class_labels=[1], guidance_scale=2.0), "null_class_embedding"),
        (dict(class_labels=[1], output_type="jpeg"), "output_type"),
        (dict(class_labels=[1, 2], batch_size=3), "batch_size=3"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    pipe = small_pipeline(class_names=["zero", "one", "two", "three"])
    with pytest.raises(ValueError, match=message):
        pipe(num_inference_steps=2, **kwargs)


def test_classifier_guidance_with_unconditional_unet_needs_labels():
    pipe = small_pipeline(classifier=True, num_classes=None)
    with pytest.raises(ValueError, match="class_labels"):
        pipe(num_inference_steps=2, classifier_scale=1.0)
    images = pipe(class_labels=[3, 0], num_inference_steps=2, classifier_scale=1.0, output_type="pt").images
    assert images.shape == (2, 3, 16, 16)
