"""What a diffusers user relies on, checked on every pipeline, model and scheduler of ours (modelled on diffusers'
PipelineTesterMixin / ModelTesterMixin / SchedulerCommonTest; written for our classes, not copied).

Intentional differences from diffusers are documented in docs/diffusers-conventions.md and tested there as such:
timestep_respacing keeps the reference's meaning, DDIM re-derives ε from the clipped x̂_0 by default.
"""

from __future__ import annotations

import inspect
import math
import tempfile

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from diffusion_canon.clip.glyph_clip import glyph_clip_config
from diffusion_canon.data.tokenizer import build_glyph_tokenizer
from diffusion_canon.models import (
    ADMClassifierModel, ADMUNet2DModel, SuperResolutionUNet2DModel, UnCLIPDecoderUNet2DModel,
)
from diffusion_canon.pipelines import (
    ADMPipeline, CascadedPipeline, SuperResolutionPipeline, UnCLIPPipeline, UnCLIPPriorPipeline,
    default_prior_scheduler,
)
from diffusion_canon.models.unclip_prior import UnCLIPPriorTransformer
from diffusion_canon.schedulers import ImprovedDDIMScheduler, ImprovedDDPMScheduler
from test_cascade import cascade
from test_pipeline_adm import small_pipeline
from test_sr_pipeline import low_res_images, sr_pipeline
from test_unclip_pipeline import make_parts

PIPELINES = [ADMPipeline, SuperResolutionPipeline, CascadedPipeline, UnCLIPPipeline, UnCLIPPriorPipeline]


def unclip_pipeline() -> UnCLIPPipeline:
    tokenizer = build_glyph_tokenizer(captions=["a red letter A", "the digit 7 in blue"], model_max_length=8)
    pipe = UnCLIPPipeline(**make_parts(tokenizer))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prior_pipeline() -> UnCLIPPriorPipeline:
    tokenizer = build_glyph_tokenizer(captions=["a red letter A"], model_max_length=8)
    torch.manual_seed(0)
    text_config = glyph_clip_config(tokenizer, hidden_size=16, num_layers=1, projection_dim=8).text_config
    prior = UnCLIPPriorTransformer(embedding_dim=8, text_hidden_size=16, num_text_tokens=8, width=16, num_layers=1,
                                   num_heads=2).eval()
    prior.set_embedding_stats(torch.randn(64, 8) * 2 + 1)
    pipe = UnCLIPPriorPipeline(prior, CLIPTextModelWithProjection(CLIPTextConfig(**text_config.to_dict())).eval(),
                               tokenizer, default_prior_scheduler(100))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def runs():
    """(pipeline, call arguments with classifier-free guidance on, what the output's first field holds)."""
    adm = small_pipeline(null_class_embedding=True)
    sr = sr_pipeline(null_class_embedding=True)
    return {
        "adm": (adm, dict(class_labels=[1, 2], num_inference_steps=4, guidance_scale=2.0, output_type="latent")),
        "sr": (sr, dict(low_res=low_res_images(), class_labels=[1, 2], num_inference_steps=4, guidance_scale=2.0,
                        output_type="latent")),
        "unclip": (unclip_pipeline(), dict(prompt="a red letter A", num_inference_steps=4, prior_num_inference_steps=2,
                                           guidance_scale=2.0, output_type="latent")),
        "prior": (prior_pipeline(), dict(prompt="a red letter A", num_inference_steps=4, guidance_scale=2.0)),
    }


@pytest.fixture(scope="module")
def pipelines():
    return runs()


@pytest.mark.parametrize("pipeline_class", PIPELINES, ids=lambda c: c.__name__)
def test_every_pipeline_has_the_diffusers_sampling_interface(pipeline_class):
    parameters = inspect.signature(pipeline_class.__call__).parameters
    assert {"callback_on_step_end", "callback_on_step_end_tensor_inputs", "generator", "output_type",
            "return_dict", "num_inference_steps"} <= set(parameters)
    assert pipeline_class._callback_tensor_inputs == ["latents"]
    for name in ("num_timesteps", "guidance_scale", "do_classifier_free_guidance", "interrupt"):
        assert isinstance(inspect.getattr_static(pipeline_class, name), property), name
    doc = pipeline_class.__call__.__doc__
    assert "Args:" in doc and "Returns:" in doc and "```py" in doc and "from_pretrained" in doc


@pytest.mark.parametrize("name", ["unclip", "prior", "sr"])
def test_num_images_per_prompt_where_diffusers_has_it(name, pipelines):
    pipe, kwargs = pipelines[name]
    assert "num_images_per_prompt" in inspect.signature(type(pipe).__call__).parameters
    out = pipe(**{**kwargs, "num_images_per_prompt": 3}, generator=torch.Generator().manual_seed(0))[0]
    one = pipe(**kwargs, generator=torch.Generator().manual_seed(0))[0]
    assert out.shape[0] == 3 * one.shape[0]
    assert not torch.equal(torch.as_tensor(out[0]), torch.as_tensor(out[1]))  # fresh noise per image


@pytest.mark.parametrize("name", ["adm", "sr", "unclip", "prior"])
def test_callback_sees_each_step_and_can_replace_the_latents(name, pipelines):
    pipe, kwargs = pipelines[name]
    steps = []

    def zero_at_last_step(pipeline, step, timestep, tensors):
        assert set(tensors) == {"latents"}
        steps.append(step)
        if step == pipeline.num_timesteps - 1:
            return {"latents": torch.zeros_like(tensors["latents"])}
        return tensors

    out = pipe(**kwargs, callback_on_step_end=zero_at_last_step, callback_on_step_end_tensor_inputs=["latents"])
    assert steps == list(range(pipe.num_timesteps)) and pipe.num_timesteps == 4
    if name == "prior":  # the prior's output is the un-standardised embedding of the zero latents
        zero = pipe.prior.unnormalize_image_embeds(torch.zeros(1, 8))
        torch.testing.assert_close(out.image_embeds, zero)
    else:
        assert out.images.abs().sum() == 0


@pytest.mark.parametrize("name", ["adm", "sr", "unclip", "prior"])
def test_callback_can_change_the_guidance_scale_between_steps(name, pipelines):
    pipe, kwargs = pipelines[name]

    def raise_guidance(pipeline, step, timestep, tensors):
        pipeline._guidance_scale += 1.0
        return tensors

    seeded = lambda **extra: pipe(**kwargs, generator=torch.Generator().manual_seed(3), **extra)[0]  # noqa: E731
    constant = seeded()
    rising = seeded(callback_on_step_end=raise_guidance)
    assert pipe.guidance_scale == kwargs["guidance_scale"] + pipe.num_timesteps
    assert pipe.do_classifier_free_guidance
    assert not torch.equal(torch.as_tensor(constant), torch.as_tensor(rising))  # the new scale was used


@pytest.mark.parametrize("name", ["adm", "sr", "unclip"])
def test_interrupt_stops_the_loop_with_the_current_latents(name, pipelines):
    pipe, kwargs = pipelines[name]
    seen = {}

    def stop_after_step_1(pipeline, step, timestep, tensors):
        seen[step] = tensors["latents"].clone()
        if step == 1:
            pipeline._interrupt = True
        return tensors

    out = pipe(**kwargs, generator=torch.Generator().manual_seed(1), callback_on_step_end=stop_after_step_1)
    assert sorted(seen) == [0, 1]
    torch.testing.assert_close(out.images, seen[1], rtol=0, atol=0)
    steps = []
    pipe(**kwargs, callback_on_step_end=lambda pipeline, step, t, tensors: steps.append(step) or tensors)
    assert steps == [0, 1, 2, 3]  # the next call starts afresh


def test_cascade_callbacks_act_on_each_stage():
    pipe = cascade()
    calls = []

    def record(stage, step, timestep, tensors):
        calls.append((type(stage).__name__, step))
        return tensors

    pipe(class_labels=[0], num_inference_steps=[3, 2], output_type="latent", callback_on_step_end=record)
    assert calls == [("ADMPipeline", 0), ("ADMPipeline", 1), ("ADMPipeline", 2), ("SuperResolutionPipeline", 0),
                     ("SuperResolutionPipeline", 1)]
    assert pipe.num_timesteps == 5


def test_one_inference_step_starts_at_the_last_training_step():
    """diffusers' users expect num_inference_steps=1 to denoise x_T from t = T−1 in one step: the result is the
    clipped x̂_0 = (x_T − √(1−ᾱ_{T−1}) ε̂) / √ᾱ_{T−1} (computed here from the U-Net directly). The reference's
    respacing "1" keeps its own meaning, t = 0."""
    pipe = small_pipeline()
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_inference_steps=1)
    assert scheduler.timesteps.tolist() == [scheduler.config.num_train_timesteps - 1]
    scheduler.set_timesteps(timestep_respacing="1")
    assert scheduler.timesteps.tolist() == [0]

    x_T = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = pipe(class_labels=[1], num_inference_steps=1, latents=x_T, output_type="latent").images
    T = scheduler.config.num_train_timesteps
    t = torch.tensor([T - 1])
    eps = pipe.unet(x_T, t, torch.tensor([1])).sample[:, :3]
    alpha_bar = float(scheduler.alphas_cumprod[T - 1])
    expected = ((x_T - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)).clamp(-1, 1)
    # float32: x̂_0 divides by √ᾱ ≈ 0.02 here, so its spacing is ~50× that of x_T; allow a few of those ulps
    torch.testing.assert_close(out, expected, rtol=0, atol=64 * torch.finfo(torch.float32).eps * float(x_T.abs().max()) / math.sqrt(alpha_bar))


def test_ddim_step_takes_diffusers_argument_order():
    """``step(model_output, timestep, sample, eta, use_clipped_model_output, generator, variance_noise, return_dict)``
    — a positional 1.0 is η, as in diffusers' DDIMScheduler."""
    s = ImprovedDDIMScheduler(num_train_timesteps=100)
    s.set_timesteps(num_inference_steps=10)
    x, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t = int(s.timesteps[3])
    positional = s.step(eps, t, x, 1.0, True, torch.Generator().manual_seed(0)).prev_sample
    keywords = s.step(eps, t, x, eta=1.0, generator=torch.Generator().manual_seed(0)).prev_sample
    deterministic = s.step(eps, t, x).prev_sample
    assert torch.equal(positional, keywords) and not torch.equal(positional, deterministic)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s.step(eps, t, x, 1.0, variance_noise=z).prev_sample, keywords)
    with pytest.raises(TypeError):
        s.step(eps, t, x, 0.0, True, None, None, True, torch.zeros_like(x))  # guidance_gradient is keyword-only


def test_ddim_use_clipped_model_output_false_keeps_the_network_epsilon():
    """With a clipped x̂_0, η = 0: x' = √ᾱ' clip(x̂_0) + √(1−ᾱ') ε, ε the network's own (diffusers' default False)
    or re-derived from the clipped x̂_0 (the reference, our default); closed forms."""
    s = ImprovedDDIMScheduler(num_train_timesteps=100, clip_sample=True)
    s.set_timesteps(num_inference_steps=10)
    t = int(s.timesteps[2])
    x, eps = 3 * torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    index = s.index_for_timestep(t)
    a, a_prev = float(s.schedule.alphas_cumprod[index]), float(s.schedule.alphas_cumprod_prev[index])
    x0 = ((x - math.sqrt(1 - a) * eps) / math.sqrt(a)).clamp(-1, 1)
    eps_clipped = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    for flag, e in ((False, eps), (True, eps_clipped)):
        expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * e
        torch.testing.assert_close(s.step(eps, t, x, 0.0, flag).prev_sample, expected, rtol=1e-5, atol=1e-5)


def test_ddpm_guidance_gradient_is_keyword_only():
    parameters = inspect.signature(ImprovedDDPMScheduler.step).parameters
    assert list(parameters)[1:6] == ["model_output", "timestep", "sample", "generator", "return_dict"]
    assert parameters["guidance_gradient"].kind is inspect.Parameter.KEYWORD_ONLY


def small_models():
    torch.manual_seed(0)
    tiny = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample_factors=(2,),
                num_head_channels=16)
    return {
        "unet": (ADMUNet2DModel(sample_size=8, num_classes=3, **tiny),
                 lambda: (torch.randn(2, 3, 8, 8), torch.tensor([3, 5]), torch.tensor([0, 2]))),
        "sr": (SuperResolutionUNet2DModel(sample_size=8, low_res_sample_size=4, **tiny),
               lambda: (torch.randn(2, 3, 8, 8), torch.tensor([3, 5]), torch.rand(2, 3, 4, 4))),
        "decoder": (UnCLIPDecoderUNet2DModel(sample_size=8, embedding_dim=8, context_dim=16, **tiny),
                    lambda: (torch.randn(2, 3, 8, 8), torch.tensor([3, 5]), torch.randn(2, 8))),
        "classifier": (ADMClassifierModel(sample_size=8, num_classes=3, pool="adaptive", **tiny),
                       lambda: (torch.randn(2, 3, 8, 8), torch.tensor([3, 5]))),
    }


@pytest.mark.parametrize("name", ["unet", "sr", "decoder", "classifier"])
def test_models_save_load_and_return_dict(name):
    model, inputs = small_models()[name]
    with torch.no_grad():
        for p in model.parameters():  # make the zero-initialised output layers visible
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    args = inputs()
    with torch.no_grad():
        as_dict = model(*args)
        as_tuple = model(*args, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 1
        assert torch.equal(as_dict[0], as_tuple[0])
        with tempfile.TemporaryDirectory() as folder:
            model.save_pretrained(folder)
            loaded = type(model).from_pretrained(folder).eval()
        assert torch.equal(loaded(*args)[0], as_dict[0])
    assert {k: v for k, v in loaded.config.items() if not k.startswith("_")} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def test_extended_models_name_only_what_they_add():
    """The SR and decoder models take every ADM U-Net field through extends_config, with their own defaults."""
    unet = set(inspect.signature(ADMUNet2DModel.__init__).parameters) - {"self"}
    sr = inspect.signature(SuperResolutionUNet2DModel.__init__).parameters
    decoder = inspect.signature(UnCLIPDecoderUNet2DModel.__init__).parameters
    assert unet - {"context_dim"} <= set(sr) and {"augmentation_level_embedding", "low_res_sample_size"} <= set(sr)
    assert unet - {"num_classes", "null_class_embedding", "low_res_channels", "class_names"} <= set(decoder)
    assert sr["out_channels"].default == 6 and decoder["context_dim"].default == 128
    assert SuperResolutionUNet2DModel(sample_size=8, model_channels=32, channel_mult=(1,)).config.low_res_channels == 3
    with pytest.raises(TypeError):
        SuperResolutionUNet2DModel(8)  # keyword arguments only, as diffusers' from_config passes them
    with pytest.raises(TypeError):
        SuperResolutionUNet2DModel(context_dim=16)  # not a field of the SR model


@pytest.mark.parametrize("scheduler_class", [ImprovedDDPMScheduler, ImprovedDDIMScheduler])
def test_scheduler_config_round_trip_and_compatibles(scheduler_class):
    s = scheduler_class(num_train_timesteps=50, beta_schedule="cosine", variance_type="learned_range")
    with tempfile.TemporaryDirectory() as folder:
        s.save_config(folder)
        loaded = scheduler_class.from_pretrained(folder)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(s.config)
    other = (ImprovedDDIMScheduler if scheduler_class is ImprovedDDPMScheduler else ImprovedDDPMScheduler)
    assert torch.equal(other.from_config(s.config).alphas_cumprod, s.alphas_cumprod)
    s.set_timesteps(num_inference_steps=5)
    assert len(s.timesteps) == s.num_inference_steps == 5 and int(s.timesteps[0]) == 49


def test_super_resolution_takes_a_list_of_arrays_or_tensors_as_one_batch():
    pipe = sr_pipeline()
    low_res = low_res_images()  # [2, C, h, w] in [0, 1]
    run = lambda images: pipe(images, class_labels=[1, 2], num_inference_steps=2, output_type="latent",  # noqa: E731
                              generator=torch.Generator().manual_seed(0)).images
    batched = run(low_res)
    assert torch.equal(run(list(low_res)), batched)
    assert torch.equal(run([image.permute(1, 2, 0).numpy() for image in low_res]), batched)
    with pytest.raises(TypeError, match="one kind"):
        run([low_res[0], low_res[1].numpy()])


def test_previous_timestep_keeps_the_input_kind():
    s = ImprovedDDPMScheduler(num_train_timesteps=100)
    s.set_timesteps(num_inference_steps=5)
    first, second = int(s.timesteps[0]), int(s.timesteps[1])
    assert s.previous_timestep(first) == second and isinstance(s.previous_timestep(first), int)
    previous = s.previous_timestep(torch.tensor(first))
    assert isinstance(previous, torch.Tensor) and int(previous) == second
    assert s.previous_timestep(0) == -1


def test_prior_encode_prompt_works_without_the_prior():
    pipe = prior_pipeline()
    alone = UnCLIPPriorPipeline(None, pipe.text_encoder, pipe.tokenizer, pipe.scheduler)
    text_embeds, tokens, mask = alone.encode_prompt("a red letter A")
    reference = pipe.encode_prompt(["a red letter A"])
    assert all(torch.equal(a, b) for a, b in zip((text_embeds, tokens, mask), reference))
    assert text_embeds.shape == (1, 8) and tokens.shape[:2] == mask.shape == (1, 8)
    with pytest.raises(ValueError, match="no prior"):
        alone("a red letter A", num_inference_steps=2)


def test_diffusers_callback_objects_bring_their_tensor_inputs():
    """A ``PipelineCallback`` names its own tensor inputs (diffusers' pipelines adopt them over the argument)."""
    from diffusers.callbacks import PipelineCallback

    class ZeroLatents(PipelineCallback):
        tensor_inputs = ["latents"]

        def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
            return {"latents": torch.zeros_like(callback_kwargs["latents"])}

    pipe = small_pipeline()
    out = pipe(class_labels=[1], num_inference_steps=3, output_type="latent", callback_on_step_end=ZeroLatents(),
               callback_on_step_end_tensor_inputs=[])
    assert out.images.abs().sum() == 0


def test_recorded_default_steps_are_used_when_no_schedule_is_given():
    pipe = ADMPipeline(**small_pipeline().components, default_num_inference_steps=3)
    pipe.set_progress_bar_config(disable=True)
    run = lambda **kwargs: pipe(class_labels=[1], output_type="latent", **kwargs) and pipe.num_timesteps  # noqa: E731
    assert run() == 3
    assert run(num_inference_steps=2) == 2 and run(timestep_respacing="4") == 4
    with tempfile.TemporaryDirectory() as folder:
        pipe.save_pretrained(folder)
        assert ADMPipeline.from_pretrained(folder).config.default_num_inference_steps == 3
    assert ADMPipeline(**small_pipeline().components).config.default_num_inference_steps is None  # all T steps
    with pytest.raises(ValueError, match="default_num_inference_steps"):
        ADMPipeline(**small_pipeline().components, default_num_inference_steps=0)

    stages = cascade()
    two = CascadedPipeline(**stages.components, default_num_inference_steps=[3, 2])
    two.set_progress_bar_config(disable=True)
    two(class_labels=[0], output_type="latent")
    assert two.num_timesteps == 5
    with pytest.raises(ValueError, match="default_num_inference_steps"):
        CascadedPipeline(**stages.components, default_num_inference_steps=[3, 2, 1])


@pytest.mark.parametrize(("folder", "expected"), [("adm-glyphs-32", 25), ("glyph-cascade-16-64", [25, 25])])
def test_shipped_folders_record_the_steps_they_were_measured_at(folder, expected):
    """25 ancestral steps per stage: the step count of the shipped folders' measurements (RESULTS.md Q2, their
    READMEs); a call that names no schedule uses it."""
    import json

    from script_helpers import PIPELINES

    assert json.loads((PIPELINES / folder / "model_index.json").read_text())["default_num_inference_steps"] == expected
