"""`diffusion-canon make-base` end to end at toy size: an SD folder that stock diffusers loads, fp16, with a recipe."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from diffusion_canon.commands import make_base as make_base_command
from diffusion_canon.finetune import make_base


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    make_base_command.add_parser(parser.add_subparsers())
    return parser.parse_args(["make-base", *argv])


def test_bad_resolution():
    with pytest.raises(ValueError, match="--resolution must be a multiple of 4"):
        make_base.run(parse(["--resolution", "30"]))


@pytest.mark.slow
def test_make_base_tiny_run_loads_in_diffusers(tmp_path):
    out = tmp_path / "base"
    args = parse(["--output_dir", str(out), "--resolution", "16", "--num_images", "32", "--held_out_style_images", "4",
                  "--vae_steps", "2", "--unet_steps", "2", "--batch_size", "8", "--num_inference_steps", "2"])
    assert args.func(args) == 0
    stored = load_file(str(out / "unet" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.float16}
    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert pipe.vae.config.scaling_factor != 0.18215  # set from the latents' std
    assert "sks" in pipe.tokenizer.get_vocab() or "sks</w>" in pipe.tokenizer.get_vocab()
    recipe = (out / "RECIPE.md").read_text()
    assert "diffusion-canon make-base" in recipe and "--unet_steps 2" in recipe
    assert "and 4 renders of the held-out styles" in recipe
    assert (out / "README.md").is_file() and (out / "image_0.png").is_file()


def test_held_out_style_images_are_outlines_in_training_fonts_whose_captions_never_name_the_style():
    from diffusion_canon.data.glyphs import HELD_OUT_FONTS, STYLE_WORDS, glyph_specs, load_glyphs

    images, captions = make_base.glyph_tensors(16, num_images=6, seed=3, held_out_style_images=40)
    train = load_glyphs(16, seed=3, split="train", num_images=6)
    assert len(images) == len(captions) == 46 and captions[:6] == list(train["caption"])
    selection = dict(seed=5, split="held_out", styles="outline", num_images=40,
                     fonts=["dejavu-sans", "dejavu-serif", "dejavu-mono", "stix", "cm-roman", "cm-sans"])
    outlines = load_glyphs(16, **selection)  # seed + 2, every training font: rendered here independently
    expected = torch.from_numpy(np.stack([np.asarray(i) for i in outlines["image"]])).permute(0, 3, 1, 2)
    torch.testing.assert_close(images[6:], expected.float() / 127.5 - 1, atol=0, rtol=0)
    assert not set(outlines["font"]) & set(HELD_OUT_FONTS)
    style_words = set(STYLE_WORDS["outline"])
    for caption, spec in zip(captions[6:], glyph_specs(**selection)):
        words = caption.replace(",", " ").split()
        assert not style_words & set(words), caption
        assert spec.character in words and "  " not in caption, caption
        article, following = caption.split(" ", 1)
        assert article not in ("a", "an") or (article == "an") == (following[0] in "aeiou"), caption  # fits the word
    assert any("outlined" in c or "hollow" in c for c in outlines["caption"])  # the words were there to drop


def test_held_out_style_word_names_the_style_by_that_word_alone():
    from diffusion_canon.data.glyphs import STYLE_WORDS, glyph_specs, recaption

    _, captions = make_base.glyph_tensors(16, num_images=6, seed=3, held_out_style_images=60,
                                          held_out_style_word="hollow")
    _, unnamed = make_base.glyph_tensors(16, num_images=6, seed=3, held_out_style_images=60)
    specs = glyph_specs(seed=5, split="held_out", styles="outline", num_images=60,
                        fonts=["dejavu-sans", "dejavu-serif", "dejavu-mono", "stix", "cm-roman", "cm-sans"])
    named = 0
    for index, (caption, without, spec) in enumerate(zip(captions[6:], unnamed[6:], specs)):
        # the caption that names the style by a word drawn at random, from the same template
        drawn = recaption(spec, [3, index]).caption
        word = next((w for w in STYLE_WORDS["outline"] if w in drawn.replace(",", " ").split()), None)
        assert "outlined" not in caption.replace(",", " ").split(), caption
        if word is None:  # the one template without a style word ("letter Q")
            assert caption == drawn == without
        else:
            article = "an" if word[0] in "aeiou" else "a"  # "an outlined", "a hollow"
            assert caption == drawn.replace(f"{article} {word}", f"a {word}").replace(word, "hollow", 1), drawn
            named += 1
    assert named > 40  # five templates in six name the style
    with pytest.raises(ValueError, match=r"name_style must be one of the words of style 'outline', \['outlined', "
                                         r"'hollow'\], or a bool; got 'bold'"):
        recaption(specs[0], 0, name_style="bold")


def test_bad_held_out_style_flags_are_refused():
    with pytest.raises(ValueError, match="--held_out_style_images must be >= 0 .* got -1"):
        make_base.run(parse(["--held_out_style_images", "-1"]))
    with pytest.raises(ValueError, match=r"--held_out_style_word must be one of \['outlined', 'hollow'\] or '' "
                                         r"\(captions without it\), got 'bold'"):
        make_base.run(parse(["--held_out_style_word", "bold"]))


def test_ink_weights_are_one_on_the_paper_and_one_plus_the_weight_on_the_ink():
    from diffusion_canon.data.glyphs import load_glyphs

    ds = load_glyphs(32, seed=1, num_images=8)
    images = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in ds["image"]])
    images = images.float() / 127.5 - 1
    weights = make_base.ink_weights(images, 10.0)
    assert weights.shape == (8, 1, 32, 32)
    # the border is paper: weight 1; the farthest pixel from it (pure ink): 11; in between for antialiased pixels
    torch.testing.assert_close(weights[:, :, 0, :], torch.ones(8, 1, 32), atol=0.05, rtol=0)
    torch.testing.assert_close(weights.amax(dim=(1, 2, 3)), torch.full((8,), 11.0))
    assert ((weights >= 1) & (weights <= 11)).all()
    # an image of paper only has no ink: weight 1 everywhere rather than a division by zero
    assert (make_base.ink_weights(torch.zeros(1, 3, 8, 8), 10.0) == 1).all()


def tiny_clip_text_encoder(folder, vocab_size: int, hidden_size: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModel

    from diffusion_canon.data.tokenizer import build_glyph_tokenizer

    tokenizer = build_glyph_tokenizer()
    model = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    model.save_pretrained(folder, safe_serialization=True)
    return tokenizer, model


def test_text_encoder_path_is_checked_before_training(tmp_path):
    with pytest.raises(ValueError, match="--text_encoder_path .*missing.* must be a folder with a CLIPTextModel"):
        make_base.run(parse(["--text_encoder_path", str(tmp_path / "missing")]))
    tiny_clip_text_encoder(tmp_path / "other-vocab", vocab_size=50)
    with pytest.raises(ValueError, match="reads 50 tokens .* the glyph tokenizer needs 673 tokens"):
        make_base.run(parse(["--text_encoder_path", str(tmp_path / "other-vocab")]))


@pytest.mark.slow
def test_make_base_conditions_on_a_given_text_encoder_and_keeps_it_frozen(tmp_path):
    tokenizer, given = tiny_clip_text_encoder(tmp_path / "clip", vocab_size=673, hidden_size=32)
    out = tmp_path / "base"
    args = parse(["--output_dir", str(out), "--resolution", "16", "--num_images", "32", "--vae_steps", "2",
                  "--unet_steps", "3", "--batch_size", "8", "--num_inference_steps", "2", "--lr_scheduler", "cosine",
                  "--held_out_style_images", "0",
                  "--text_encoder_path", str(tmp_path / "clip")])
    assert args.func(args) == 0
    pipe = StableDiffusionPipeline.from_pretrained(str(out))
    assert pipe.unet.config.cross_attention_dim == 32  # the given encoder's width, not the default 64
    assert pipe.tokenizer.get_vocab() == tokenizer.get_vocab()
    stored = load_file(str(out / "text_encoder" / "model.safetensors"))
    for name, tensor in given.state_dict().items():  # untouched by training, and kept float32 (cast_for_storage)
        torch.testing.assert_close(stored[name], tensor, atol=0, rtol=0)
    assert "--text_encoder_path" in (out / "RECIPE.md").read_text()
    assert f"frozen text encoder of `{tmp_path / 'clip'}`" in (out / "README.md").read_text()


@pytest.mark.parametrize("stages, word, unet_sees_outlines", [("both", "hollow", True), ("vae", "", False)])
def test_held_out_style_stages_choose_which_stages_train_on_the_outlines(tmp_path, monkeypatch, stages, word,
                                                                       unet_sees_outlines):
    seen = {}
    train_vae, train_unet = make_base.train_vae, make_base.train_unet

    def recording_vae(vae, images, args):
        seen["vae"] = len(images)
        train_vae(vae, images, args)

    def recording_unet(unet, text_encoder, tokenizer, latent_params, captions, *rest):
        seen["unet"], seen["latents"] = list(captions), len(latent_params)
        train_unet(unet, text_encoder, tokenizer, latent_params, captions, *rest)

    monkeypatch.setattr(make_base, "train_vae", recording_vae)
    monkeypatch.setattr(make_base, "train_unet", recording_unet)
    out = tmp_path / "base"
    args = parse(["--output_dir", str(out), "--resolution", "16", "--num_images", "8", "--held_out_style_images", "5",
                  "--held_out_style_stages", stages, "--held_out_style_word", word, "--vae_steps", "1",
                  "--unet_steps", "1", "--batch_size", "2", "--num_inference_steps", "1"])
    assert args.func(args) == 0
    _, captions = make_base.glyph_tensors(16, num_images=8, seed=0, held_out_style_images=5, held_out_style_word=word)
    assert seen["vae"] == 13
    assert seen["unet"] == (captions if unet_sees_outlines else captions[:8]) and seen["latents"] == len(seen["unet"])
    recipe, card = (out / "RECIPE.md").read_text(), " ".join((out / "README.md").read_text().split())
    assert ("(in the VAE's data only)" in recipe) == (stages == "vae")
    told = ('shown to it, in 5 renders whose captions call it "hollow" and nothing else' if word
            else "shown to it (to the VAE only), in 5 renders whose captions never name it")
    assert ('name the style only as "hollow"' in recipe) == bool(word) and told in card, card
