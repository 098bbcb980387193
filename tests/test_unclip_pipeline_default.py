"""The shipped default `pipelines/unclip-glyphs`: loads by both routes, its components agree, it generates from prompts
and images, and its demo section renders."""

import json

import pytest
import torch
from diffusers import DiffusionPipeline

from diffusion_canon.clip.training import hard_negative_retrieval
from diffusion_canon.demo.unclip import PIPELINE_NAME, load_default_unclip, unclip_section
from diffusion_canon.pipelines.pipeline_unclip import UnCLIPPipeline
from script_helpers import PIPELINES

DEFAULT_PIPELINE = PIPELINES / PIPELINE_NAME

pytestmark = pytest.mark.skipif(not (DEFAULT_PIPELINE / "model_index.json").is_file(),
                                reason="pipelines/unclip-glyphs not built (see its RECIPE.md)")


def test_default_folder_is_complete_and_small():
    index = json.loads((DEFAULT_PIPELINE / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline", "UnCLIPPipeline"]
    for name in ("decoder", "decoder_scheduler", "prior", "prior_scheduler", "text_encoder", "tokenizer",
                 "image_encoder", "image_processor"):
        assert index[name][0] is not None, name
    size = sum(p.stat().st_size for p in DEFAULT_PIPELINE.rglob("*") if p.is_file())
    assert size < 12 * 2**20, f"{size / 2**20:.1f} MiB"
    assert (DEFAULT_PIPELINE / "RECIPE.md").is_file() and (DEFAULT_PIPELINE / "README.md").is_file()


def test_default_generates_by_both_loading_routes():
    pipe = load_default_unclip(DEFAULT_PIPELINE)
    assert pipe.decoder.dtype == torch.float32
    generic = DiffusionPipeline.from_pretrained(DEFAULT_PIPELINE, trust_remote_code=True, dtype=torch.float32)
    assert isinstance(generic, UnCLIPPipeline)
    generic.set_progress_bar_config(disable=True)
    kwargs = dict(prompt=["a red letter A"], num_inference_steps=3, prior_num_inference_steps=3, output_type="pt")
    a = pipe(**kwargs, generator=torch.Generator().manual_seed(0))
    b = generic(**kwargs, generator=torch.Generator().manual_seed(0))
    side = pipe.decoder.config.sample_size
    assert a.images.shape == (1, 3, side, side)
    torch.testing.assert_close(a.images, b.images)
    variations = pipe.variations(a.images, num_images_per_prompt=2, num_inference_steps=3, output_type="np")
    assert variations.images.shape == (2, side, side, 3)


@pytest.mark.slow  # 25 + 25 steps for 16 prompts' images and 18 variations: ~20 s on a busy CPU
def test_demo_section(tmp_path):
    section = unclip_section(tmp_path, PIPELINES)
    assert all((tmp_path / name).is_file() for name, _ in section.images)


def test_default_clip_knows_characters():
    """Issue #15 item 1: the shipped CLIP's held-out caption -> image top-1 is >= 0.9 when every caption's own
    rendering competes with its three one-attribute variants (another character, ink colour or style) and 1,596 other
    glyphs; the target is the issue's. The towers are stored in float32, so this is what training measured (0.940)."""
    pipe = load_default_unclip(DEFAULT_PIPELINE)
    scores = hard_negative_retrieval(pipe.text_encoder, pipe.image_encoder, pipe.tokenizer, pipe.image_processor,
                                     num_queries=200)
    assert scores["n"] == 200 and scores["candidates"] == 1600
    assert scores["top1"] >= 0.9, scores


def test_default_draws_the_asked_character_and_colour():
    """Issue #15 item 2 in small: one held-out caption per character (36, seed 0), one sample each at the folder's
    defaults, read back by the glyph classifier and ``read_ink_colors``; variations of the captions' real renderings
    likewise. Benchmark T1 measures the targets on 2 × 216 captions (character 0.88 / 0.92, colour 0.97 / 0.93,
    variations 0.81 / 0.83); here the shipped folder reads 0.89 / 0.92 and variations 0.86 / 0.94. With 36 samples
    one standard error is about 0.06 for the character and 0.05 for the colour, so the bounds sit three to four below
    the measured rates: they catch a decoder that lost the character (the plain-CLIP default: 0.06 here) or the
    colour, not a shift of a few points."""
    from diffusion_canon.data.glyphs import load_glyphs
    from diffusion_canon.evaluation import class_accuracy, color_accuracy, load_glyph_classifier

    pipe = load_default_unclip(DEFAULT_PIPELINE)
    data = load_glyphs(pipe.decoder.config.sample_size, seed=0, split="validation", num_images=36)
    assert sorted(data["label"]) == list(range(36))  # every character once
    named = [i for i, (caption, color) in enumerate(zip(data["caption"], data["color"]))
             if color in caption.lower().split()]  # the captions that name their ink colour
    classifier = load_glyph_classifier()
    prompts = pipe(list(data["caption"]), generator=torch.Generator().manual_seed(0), output_type="np").images
    variations = pipe.variations(list(data["image"]), generator=torch.Generator().manual_seed(0),
                                 output_type="np").images
    for images, scored, bounds in ((prompts, named, (0.65, 0.75)), (variations, list(range(36)), (0.6, 0.75))):
        character = class_accuracy(images, data["label"], classifier=classifier)
        color = color_accuracy(images[scored], [data["color"][i] for i in scored])
        assert character >= bounds[0] and color >= bounds[1], (character, color)
