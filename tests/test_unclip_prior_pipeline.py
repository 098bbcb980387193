"""UnCLIPPriorPipeline: guidance formula, null condition, rerank, RNG reproducibility, bad input, save/load."""

import pytest
import torch
from diffusers import DiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from diffusion_canon.data.tokenizer import build_glyph_tokenizer
from diffusion_canon.clip.glyph_clip import glyph_clip_config
from diffusion_canon.models.unclip_prior import UnCLIPPriorTransformer
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_unclip_prior import UnCLIPPriorPipeline, default_prior_scheduler
from diffusion_canon.schedulers import ImprovedDDPMScheduler

D = 8
PROMPTS = ["a red letter A", "the digit 7 in blue"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_glyph_tokenizer(captions=PROMPTS + ["a green letter B"], model_max_length=8)


def make_pipeline(tokenizer, embedding_dim=D, text_hidden_size=16, num_text_tokens=8):
    torch.manual_seed(0)
    text_config = glyph_clip_config(tokenizer, hidden_size=16, num_layers=1, projection_dim=D).text_config
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**text_config.to_dict())).eval()
    prior = UnCLIPPriorTransformer(embedding_dim=embedding_dim, text_hidden_size=text_hidden_size,
                                   num_text_tokens=num_text_tokens, width=16, num_layers=2, num_heads=2).eval()
    prior.set_embedding_stats(torch.randn(64, embedding_dim) * 2 + 1)
    return UnCLIPPriorPipeline(prior, text_encoder, tokenizer, default_prior_scheduler(100)).to("cpu")


@pytest.fixture(scope="module")
def pipe(tokenizer):
    pipe = make_pipeline(tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, seed=0, **kwargs):
    kwargs = {"prompt": PROMPTS, "num_inference_steps": 5, **kwargs}
    return pipe(**kwargs, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_reproducibility(pipe):
    out = run(pipe, num_images_per_prompt=3)
    assert out.image_embeds.shape == (6, D) and out.text_embeds.shape == (6, D)
    assert out.text_token_encodings.shape == (6, 8, 16) and out.text_attention_mask.shape == (6, 8)
    torch.testing.assert_close(out.text_embeds[:3], out.text_embeds[0].expand(3, D))  # prompt-major
    torch.testing.assert_close(run(pipe, num_images_per_prompt=3).image_embeds, out.image_embeds)
    assert not torch.allclose(run(pipe, seed=1, num_images_per_prompt=3).image_embeds, out.image_embeds)
    as_numpy = run(pipe, num_images_per_prompt=3, output_type="np")
    assert as_numpy.image_embeds.shape == (6, D)


def test_one_step_guidance_equals_hand_computed_x0(pipe):
    # a 1-step respacing has a single step with ᾱ_prev = 1 and no noise: the result is the guided x̂0, clipped, rescaled
    latents = torch.randn(2, D)
    text, tokens, mask = pipe.encode_prompt(PROMPTS, "cpu")
    pipe.scheduler.set_timesteps(num_inference_steps=1)
    t = pipe.scheduler.timesteps.expand(2)
    with torch.no_grad():
        cond = pipe.prior(latents, t, text, tokens, mask).predicted_image_embedding
        uncond = pipe.prior(latents, t, text, tokens, mask, keep_condition=torch.zeros(2, dtype=torch.bool))
        uncond = uncond.predicted_image_embedding
    for w in (0.0, 1.0, 3.0):
        expected = pipe.prior.unnormalize_image_embeds((uncond + w * (cond - uncond)).clamp(-5, 5))
        out = pipe(PROMPTS, num_inference_steps=1, guidance_scale=w, latents=latents.clone())
        torch.testing.assert_close(out.image_embeds, expected, atol=1e-5, rtol=1e-5)


def test_unguided_sampling_ignores_the_prompt(pipe):
    a = run(pipe, guidance_scale=0.0, prompt=["a red letter A"] * 2).image_embeds
    b = run(pipe, guidance_scale=0.0, prompt=["a green letter B"] * 2).image_embeds
    c = run(pipe, guidance_scale=1.0, prompt=["a green letter B"] * 2).image_embeds
    torch.testing.assert_close(a, b)
    assert not torch.allclose(b, c)


def test_num_candidates_keeps_the_most_similar_sample(pipe):
    n = 4
    latents = torch.randn(2 * n, D)
    candidates = pipe(PROMPTS, num_inference_steps=3, num_images_per_prompt=n, latents=latents.clone(),
                      generator=torch.Generator().manual_seed(5))
    best = pipe(PROMPTS, num_inference_steps=3, num_candidates=n, latents=latents.clone(),
                generator=torch.Generator().manual_seed(5))
    assert best.image_embeds.shape == (2, D)
    for i in range(2):
        rows = candidates.image_embeds[i * n : (i + 1) * n]
        cosine = torch.nn.functional.normalize(rows, dim=-1) @ torch.nn.functional.normalize(best.text_embeds[i], dim=0)
        torch.testing.assert_close(best.image_embeds[i], rows[cosine.argmax()])
        torch.testing.assert_close(best.scores[i], cosine.max())


def test_bad_input(pipe, tokenizer):
    for prompt in (None, []):
        with pytest.raises(ValueError, match="prompt"):
            pipe(prompt)
    with pytest.raises(TypeError, match="prompt"):
        pipe(["a", 3])
    with pytest.raises(ValueError, match="num_candidates"):
        pipe(PROMPTS, num_candidates=0)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe(PROMPTS, num_images_per_prompt=0)
    with pytest.raises(ValueError, match="latents"):
        pipe(PROMPTS, latents=torch.randn(3, D))
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPTS, output_type="pil")
    with pytest.raises(ValueError, match="embedding_dim=6"):
        make_pipeline(tokenizer, embedding_dim=6)
    with pytest.raises(ValueError, match="text_hidden_size=12"):
        make_pipeline(tokenizer, text_hidden_size=12)
    good = make_pipeline(tokenizer)
    with pytest.raises(ValueError, match="prediction_type"):
        epsilon_scheduler = ImprovedDDPMScheduler(num_train_timesteps=100)
        UnCLIPPriorPipeline(good.prior, good.text_encoder, good.tokenizer, epsilon_scheduler)


def test_prior_reading_only_the_text_embedding(tokenizer):
    pipe = make_pipeline(tokenizer, text_hidden_size=0, num_text_tokens=0)
    out = pipe(PROMPTS, num_inference_steps=2, num_candidates=2, generator=torch.Generator().manual_seed(0))
    assert out.image_embeds.shape == (2, D) and out.text_token_encodings.shape == (2, 8, 16)
    with pytest.raises(ValueError, match="num_text_tokens=6"):
        make_pipeline(tokenizer, num_text_tokens=6)


def test_unset_statistics_are_an_error(tokenizer):
    pipe = make_pipeline(tokenizer)
    pipe.prior.clip_std.zero_()
    with pytest.raises(ValueError, match="set_embedding_stats"):
        pipe(PROMPTS, num_inference_steps=1)


def test_saved_folder_loads_with_diffusers(pipe, tmp_path):
    save_pipeline_folder(pipe, tmp_path / "prior")
    expected = run(pipe, num_candidates=2).image_embeds
    for loaded in (DiffusionPipeline.from_pretrained(tmp_path / "prior", trust_remote_code=True),
                   UnCLIPPriorPipeline.from_pretrained(tmp_path / "prior")):
        assert type(loaded) is UnCLIPPriorPipeline
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(run(loaded, num_candidates=2).image_embeds, expected)
