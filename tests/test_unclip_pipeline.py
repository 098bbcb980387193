"""UnCLIPPipeline: composition with the prior, classifier-free guidance arithmetic, RNG contract, image variations,
the optional SR stage, bad input (prompts, dimensions between prior / decoder / CLIP), save/load by both routes."""

from types import SimpleNamespace

import pytest
import torch
from diffusers import DiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig, CLIPVisionModelWithProjection

from diffusion_canon.data.tokenizer import build_glyph_tokenizer
from diffusion_canon.clip.encoding import encode_images
from diffusion_canon.clip.glyph_clip import glyph_clip_config, glyph_clip_image_processor
from diffusion_canon.models.unclip_decoder import UnCLIPDecoderUNet2DModel
from diffusion_canon.models.unclip_prior import UnCLIPPriorTransformer
from diffusion_canon.pipelines.hub import save_pipeline_folder
from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline, decoder_model, default_decoder_scheduler
from diffusion_canon.pipelines.sampling import classifier_free_guidance
from diffusion_canon.pipelines.pipeline_unclip_prior import UnCLIPPriorPipeline, default_prior_scheduler

D, LENGTH = 8, 8
PROMPTS = ["a red letter A", "the digit 7 in blue"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_glyph_tokenizer(captions=PROMPTS + ["a green letter B"], model_max_length=LENGTH)


def make_parts(tokenizer, decoder_dim=D, prior_dim=D, text_hidden_size=16, with_prior=True):
    torch.manual_seed(0)
    config = glyph_clip_config(tokenizer, image_size=16, patch_size=8, hidden_size=16, num_layers=1, projection_dim=D)
    parts = dict(
        text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**config.text_config.to_dict())).eval(),
        tokenizer=tokenizer,
        image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**config.vision_config.to_dict())).eval(),
        image_processor=glyph_clip_image_processor(16),
        decoder=UnCLIPDecoderUNet2DModel(
            sample_size=8, model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_downsample_factors=(2,),
            embedding_dim=decoder_dim, context_dim=16, text_hidden_size=text_hidden_size,
            num_text_tokens=LENGTH if text_hidden_size else 0,
        ).eval(),
        decoder_scheduler=default_decoder_scheduler(100),
    )
    with torch.no_grad():  # a trained decoder's output layers are not zero; make every path visible
        for p in parts["decoder"].parameters():
            if not p.any():
                p.normal_(0, 0.1)
    if with_prior:
        prior = UnCLIPPriorTransformer(embedding_dim=prior_dim, text_hidden_size=16, num_text_tokens=LENGTH, width=16,
                                       num_layers=1, num_heads=2).eval()
        prior.set_embedding_stats(torch.randn(32, prior_dim) * 2 + 1)
        parts.update(prior=prior, prior_scheduler=default_prior_scheduler(100))
    return parts


@pytest.fixture(scope="module")
def pipe(tokenizer):
    pipe = UnCLIPPipeline(**make_parts(tokenizer))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, seed=0, **kwargs):
    kwargs = {"prompt": PROMPTS, "num_inference_steps": 3, "prior_num_inference_steps": 3, "output_type": "pt",
              **kwargs}
    return pipe(**kwargs, generator=torch.Generator().manual_seed(seed))


def test_prompts_to_images_composes_prior_then_decoder(pipe):
    out = generate(pipe, num_images_per_prompt=2)
    assert out.images.shape == (4, 3, 8, 8) and 0 <= out.images.min() and out.images.max() <= 1
    prior = UnCLIPPriorPipeline(pipe.prior, pipe.text_encoder, pipe.tokenizer, pipe.prior_scheduler)
    prior.set_progress_bar_config(disable=True)
    expected = prior(PROMPTS, num_images_per_prompt=2, num_inference_steps=3,
                     generator=torch.Generator().manual_seed(0)).image_embeds
    torch.testing.assert_close(out.image_embeds, expected)  # the prior draws first from the shared generator
    torch.testing.assert_close(generate(pipe, num_images_per_prompt=2).images, out.images)  # same seed, same images
    assert not torch.allclose(generate(pipe, seed=1, num_images_per_prompt=2).images, out.images)
    assert len(generate(pipe, output_type="pil").images) == 2


def test_decoder_rng_contract(pipe):
    """With one generator, the decoder draws x_T first (shape (B, C, H, W)), then each step's noise."""
    embeds = torch.randn(2, D)
    g = torch.Generator().manual_seed(3)
    x = pipe.decode(embeds, num_inference_steps=3, generator=g, output_type="latent")
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(2, 3, 8, 8, generator=g)
    torch.testing.assert_close(pipe.decode(embeds, num_inference_steps=3, generator=g, latents=noise,
                                           output_type="latent"), x)


def guided_decoder_output(pipe, x, t, image_embeds, tokens, scale, keep_image=True):
    pipe.begin_sampling(scale)
    model = decoder_model(pipe.decoder, image_embeds, tokens, keep_image)
    return classifier_free_guidance(model, pipe, channels=x.shape[1])(x, t)


@torch.no_grad()
def test_classifier_free_guidance_arithmetic(pipe):
    g = torch.Generator().manual_seed(4)
    x, e, tokens = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, D, generator=g), torch.randn(2, LENGTH, 16)
    t = torch.tensor([40, 40])
    off = torch.zeros(2, dtype=torch.bool)
    conditional = pipe.decoder(x, t, e, tokens).sample
    unconditional = pipe.decoder(x, t, e, tokens, keep_image=off, keep_text=off).sample
    guided = guided_decoder_output(pipe, x, t, e, tokens, 3.0)
    close = dict(atol=1e-4, rtol=1e-4)  # one batch of 4 vs two of 2: float32 summation order differs
    torch.testing.assert_close(guided[:, :3], unconditional[:, :3] + 3.0 * (conditional[:, :3] - unconditional[:, :3]),
                               **close)
    torch.testing.assert_close(guided[:, 3:], conditional[:, 3:], **close)  # Σ from the conditional pass
    torch.testing.assert_close(guided_decoder_output(pipe, x, t, e, tokens, 1.0), conditional)
    # caption only: the conditional pass sees the null embedding and the caption
    caption_only = pipe.decoder(x, t, e, tokens, keep_image=off).sample
    guided = guided_decoder_output(pipe, x, t, e, tokens, 3.0, keep_image=False)
    torch.testing.assert_close(guided[:, :3], unconditional[:, :3] + 3.0 * (caption_only[:, :3] - unconditional[:, :3]),
                               **close)


def test_image_variations_decode_the_input_embedding(pipe):
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    out = pipe.variations(images, num_images_per_prompt=3, num_inference_steps=2, output_type="np",
                          generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (6, 8, 8, 3)
    expected = encode_images(pipe.image_encoder, pipe.image_processor, images).repeat_interleave(3, dim=0)
    torch.testing.assert_close(out.image_embeds, expected)
    captioned = pipe.variations(images, prompt="a red letter A", num_inference_steps=2, output_type="pt",
                                generator=torch.Generator().manual_seed(0)).images
    uncaptioned = pipe.variations(images, num_inference_steps=2, output_type="pt",
                                  generator=torch.Generator().manual_seed(0)).images
    assert captioned.shape == (2, 3, 8, 8) and not torch.allclose(captioned, uncaptioned)


def test_super_resolution_stage_receives_the_decoder_images(pipe):
    seen = {}

    def stage(low_res, generator, output_type, **kwargs):
        seen.update(low_res=low_res, output_type=output_type, **kwargs)
        return SimpleNamespace(images="upsampled")

    out = generate(pipe, super_resolution=stage, super_resolution_kwargs={"num_inference_steps": 2})
    assert out.images == "upsampled" and seen["num_inference_steps"] == 2 and seen["output_type"] == "pt"
    torch.testing.assert_close(seen["low_res"], generate(pipe).images)


def test_bad_input(pipe, tokenizer):
    with pytest.raises(ValueError, match="got None"):
        pipe(None)
    with pytest.raises(ValueError, match="empty list"):
        pipe([])
    with pytest.raises(ValueError, match="num_candidates must be >= 1 and <= 10000, got 0"):
        pipe(PROMPTS, num_candidates=0)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe(PROMPTS, num_images_per_prompt=0)
    with pytest.raises(TypeError, match="guidance_scale must be a number"):
        pipe.decode(torch.randn(1, D), guidance_scale="3")
    with pytest.raises(ValueError, match="output_type"):
        pipe(PROMPTS, output_type="jpeg")
    with pytest.raises(ValueError, match=r"embedding_dim=8\), got \(1, 6\)"):
        pipe.decode(torch.randn(1, 6))
    with pytest.raises(ValueError, match="caption only"):
        pipe.decode(None)
    with pytest.raises(ValueError, match="got None"):
        pipe.variations(None)
    with pytest.raises(ValueError, match="empty list"):
        pipe.variations([])
    # dimensions that disagree between the components
    with pytest.raises(ValueError, match="embedding_dim=6 does not match the CLIP text encoder projection_dim=8"):
        UnCLIPPipeline(**make_parts(tokenizer, decoder_dim=6))
    with pytest.raises(ValueError, match="does not match the prior embedding_dim=6"):
        UnCLIPPipeline(**make_parts(tokenizer, prior_dim=6))
    with pytest.raises(ValueError, match="text_hidden_size=12 does not match the CLIP text encoder's hidden_size=16"):
        UnCLIPPipeline(**make_parts(tokenizer, text_hidden_size=12))
    no_prior = UnCLIPPipeline(**make_parts(tokenizer, with_prior=False))
    with pytest.raises(ValueError, match="no prior"):
        no_prior(PROMPTS)


def test_saved_folder_loads_by_both_routes(pipe, tmp_path):
    save_pipeline_folder(pipe, tmp_path)
    expected = generate(pipe).images
    for loaded in (UnCLIPPipeline.from_pretrained(tmp_path),
                   DiffusionPipeline.from_pretrained(tmp_path, trust_remote_code=True)):
        assert type(loaded).__name__ == "UnCLIPPipeline"
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(generate(loaded).images, expected)
