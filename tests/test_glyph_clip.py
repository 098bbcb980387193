"""The tiny CLIP: contrastive training learns (retrieval far above chance), the folder loads as standard transformers
CLIP classes, and the unCLIP encoders read the same embeddings from a CLIPModel and from its split towers."""

import random

import pytest
import torch
from PIL import Image, ImageDraw
from transformers import CLIPModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection

from diffusion_canon.data.tokenizer import build_glyph_tokenizer
from diffusion_canon.clip.encoding import encode_images, encode_pairs, encode_prompts, images_to_pixel_values
from diffusion_canon.clip.glyph_clip import glyph_clip_config, glyph_clip_image_processor
from diffusion_canon.clip.training import text_to_image_retrieval, train_glyph_clip

COLORS = {"red": (220, 30, 30), "green": (30, 170, 30), "blue": (30, 30, 220), "black": (0, 0, 0)}
SHAPES = ("square", "circle", "bar")


def shapes_world(n: int, seed: int) -> tuple[list[Image.Image], list[str]]:
    """A 12-caption toy world (colour x shape, jittered position): cheap to render, easy to learn."""
    rng = random.Random(seed)
    images, captions = [], []
    for _ in range(n):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        image = Image.new("RGB", (32, 32), "white")
        draw = ImageDraw.Draw(image)
        x, y = 16 + rng.randint(-4, 4), 16 + rng.randint(-4, 4)
        box = (x - 11, y - 3, x + 11, y + 3) if shape == "bar" else (x - 9, y - 9, x + 9, y + 9)
        (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLORS[color])
        images.append(image)
        captions.append(f"a {color} {shape}")
    return images, captions


@pytest.fixture(scope="module")
def tokenizer():
    return build_glyph_tokenizer(captions=shapes_world(64, 0)[1])


def test_short_contrastive_training_retrieves_far_above_chance(tokenizer):
    images, captions = shapes_world(384, seed=0)
    processor = glyph_clip_image_processor(32)
    model = CLIPModel(glyph_clip_config(tokenizer, hidden_size=32, num_layers=1, patch_size=8, projection_dim=16))
    eval_images, eval_captions = shapes_world(100, seed=1)
    before = text_to_image_retrieval(model, tokenizer, eval_images, eval_captions, processor)
    model = train_glyph_clip(images, captions, tokenizer, model=model, image_processor=processor, num_steps=150,
                             batch_size=48)
    after = text_to_image_retrieval(model, tokenizer, eval_images, eval_captions, processor)
    # chance counts every image sharing the query's caption: ~1/12 here
    assert after["n"] == 100 and 0.04 < after["chance"] < 0.15
    assert after["top1"] >= 4 * after["chance"], (before, after)
    assert after["top1"] > before["top1"] + 0.2, (before, after)


def test_retrieval_metric_counts_same_caption_as_correct():
    class Fixed(torch.nn.Module):  # logits_per_text chosen by hand
        def forward(self, input_ids, attention_mask, pixel_values):
            logits = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
            return type("Out", (), {"logits_per_text": logits})()

    tok = build_glyph_tokenizer(captions=["a red square", "a blue bar"])
    images = [Image.new("RGB", (32, 32))] * 3
    result = text_to_image_retrieval(Fixed(), tok, images, ["a red square", "a red square", "a blue bar"],
                                     glyph_clip_image_processor())
    # query 0 -> image 1 (same caption: right), query 1 -> image 2 (wrong), query 2 -> image 0 (wrong)
    assert result["top1"] == pytest.approx(1 / 3)
    assert result["chance"] == pytest.approx((2 + 2 + 1) / 9)


def test_saved_folder_loads_as_split_towers_with_the_same_embeddings(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = CLIPModel(glyph_clip_config(tokenizer, hidden_size=32, num_layers=1, projection_dim=16)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    text_encoder = CLIPTextModelWithProjection.from_pretrained(tmp_path).eval()
    image_encoder = CLIPVisionModelWithProjection.from_pretrained(tmp_path).eval()
    prompts = ["a red square", "a blue bar"]
    embeds, tokens, mask = encode_prompts(model, tokenizer, prompts)
    embeds2, tokens2, mask2 = encode_prompts(text_encoder, tokenizer, prompts)
    assert embeds.shape == (2, 16) and tokens.shape == (2, tokenizer.model_max_length, 32)
    assert mask.sum(1).tolist() == [5, 5]  # bos a red square eos
    torch.testing.assert_close(embeds, embeds2)
    torch.testing.assert_close(tokens, tokens2)
    # independent path: normalised by hand, pooled by CLIPModel.get_image_features
    images = torch.rand(3, 3, 32, 32)
    processor = glyph_clip_image_processor()
    mean, std = torch.tensor(processor.image_mean).view(3, 1, 1), torch.tensor(processor.image_std).view(3, 1, 1)
    by_hand = model.get_image_features(pixel_values=(images - mean) / std)
    by_hand = getattr(by_hand, "pooler_output", by_hand)
    torch.testing.assert_close(encode_images(image_encoder, processor, images), by_hand, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(encode_images(model, processor, images.permute(0, 2, 3, 1).numpy()), by_hand,
                               atol=1e-4, rtol=1e-4)


def test_encode_pairs_batches_like_single_calls(tokenizer):
    torch.manual_seed(0)
    model = CLIPModel(glyph_clip_config(tokenizer, hidden_size=16, num_layers=1, projection_dim=8)).eval()
    images, captions = shapes_world(5, seed=2)
    processor = glyph_clip_image_processor()
    pairs = encode_pairs(model, tokenizer, processor, images, captions, batch_size=2)
    assert pairs["image_embeds"].shape == (5, 8) and pairs["tokens"].shape == (5, tokenizer.model_max_length, 16)
    text_embeds, tokens, mask = encode_prompts(model, tokenizer, captions)
    torch.testing.assert_close(pairs["text_embeds"], text_embeds)
    torch.testing.assert_close(pairs["mask"], mask)
    torch.testing.assert_close(pairs["image_embeds"], encode_images(model, processor, images))
    with pytest.raises(ValueError, match="as many images as captions"):
        encode_pairs(model, tokenizer, processor, images, captions[:3])


def test_pixel_values_bad_shape():
    with pytest.raises(ValueError, match="NCHW"):
        images_to_pixel_values(torch.rand(3, 32, 32), glyph_clip_image_processor())


def test_train_clip_command_saves_a_standard_clip_folder(tmp_path):
    import argparse
    import json

    from transformers import AutoImageProcessor, CLIPTokenizer

    from diffusion_canon.commands.train_clip import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train-clip", "--output_dir", str(tmp_path), "--resolution", "16", "--num_images", "32",
                              "--num_eval_images", "10", "--num_steps", "3", "--batch_size", "16",
                              "--hidden_size", "16", "--num_layers", "1", "--vision_hidden_size", "32",
                              "--patch_size", "8", "--hard_negatives", "--label_weight", "1"])
    assert args.func(args) == 0
    metrics = json.loads((tmp_path / "retrieval.json").read_text())
    random_pairs, hard = metrics["random_pairs"], metrics["hard_negatives"]
    assert random_pairs["n"] == 10 and 0 <= random_pairs["top1"] <= 1 and 0 < random_pairs["chance"] <= 1
    assert hard["n"] == 10 and hard["candidates"] == 4 * 20 and 0 <= hard["top1"] <= 1
    assert (tmp_path / "model.safetensors").exists()
    assert "Tiny glyph CLIP" in (tmp_path / "README.md").read_text()
    model = CLIPModel.from_pretrained(tmp_path)
    assert model.config.vision_config.image_size == 16 and model.config.projection_dim == 32
    assert model.config.vision_config.hidden_size == 32 and model.config.text_config.hidden_size == 16
    tokenizer = CLIPTokenizer.from_pretrained(tmp_path)
    assert len(tokenizer.tokenize("a sks font letter A")) == 5
    assert AutoImageProcessor.from_pretrained(tmp_path).crop_size == {"height": 16, "width": 16}


@pytest.mark.slow
def test_glyph_clip_retrieves_held_out_glyphs_far_above_chance():
    # a few minutes on a busy CPU (208 s measured); the recorded 300-step run on 4096 images: top-1 0.24 vs chance
    # 0.01 (see the unCLIP README section)
    from diffusion_canon.data.glyphs import load_glyphs

    tokenizer = build_glyph_tokenizer()
    train = load_glyphs(32, seed=0, split="train", num_images=2048)
    held_out = load_glyphs(32, seed=1, split="train", num_images=100)
    processor = glyph_clip_image_processor(32)
    model = train_glyph_clip(list(train["image"]), list(train["caption"]), tokenizer, image_processor=processor,
                             num_steps=300, batch_size=128)
    result = text_to_image_retrieval(model, tokenizer, list(held_out["image"]), list(held_out["caption"]), processor)
    assert result["top1"] >= 10 * result["chance"], result


def test_hard_negative_groups_differ_from_their_base_in_one_attribute():
    from diffusion_canon.clip.training import HARD_NEGATIVE_ATTRIBUTES, hard_negative_groups
    from diffusion_canon.data.glyphs import HELD_OUT_FONTS, HELD_OUT_STYLES, glyph_specs

    attributes = ("character", "font", "style", "color", "background")
    specs = hard_negative_groups(60, seed=3)
    bases = glyph_specs(num_images=60, seed=3)
    assert len(specs) == 60 * (1 + len(HARD_NEGATIVE_ATTRIBUTES))
    for index, base in enumerate(bases):
        group = specs[4 * index : 4 * index + 4]
        assert [getattr(group[0], a) for a in attributes] == [getattr(base, a) for a in attributes]
        for variant, attribute in zip(group[1:], HARD_NEGATIVE_ATTRIBUTES):
            changed = [a for a in attributes if getattr(variant, a) != getattr(base, a)]
            # a family with a single face cannot change style: it changes font instead
            assert changed == [attribute] or (attribute == "style" and changed == ["font"]), (base, variant)
            assert (variant.rotation, variant.scale, variant.shift) == (base.rotation, base.scale, base.shift)
            assert variant.font not in HELD_OUT_FONTS and variant.style not in HELD_OUT_STYLES
            if changed == ["character"]:
                assert variant.character in variant.caption.replace(",", " ").split()


def test_retrieval_scores_judge_by_what_the_caption_names():
    from dataclasses import replace

    from diffusion_canon.clip.training import names_every_attribute, retrieval_scores
    from diffusion_canon.data.glyphs import GlyphSpec

    query = GlyphSpec("Q", "stix", "bold", "red", "white", 0.0, 1.0, (0.0, 0.0), "a red bold Times-like serif letter Q")
    other_paper = replace(query, background="cream")  # the caption does not name the paper: as right as the query
    blue = replace(query, color="blue", caption="a blue bold Times-like serif letter Q")
    letter_o = replace(query, character="O", caption="a red bold Times-like serif letter O")
    specs = [query, other_paper, blue, letter_o]
    similarity = torch.tensor([[0.0, 1.0, 0.5, 0.2], [0.0, 0.1, 0.9, 0.2], [0.0, 0.1, 0.2, 0.9]])
    # three queries, all the caption of specs[0]: they retrieve other_paper (right), blue and letter_o (wrong)
    scores = retrieval_scores(specs, [0, 0, 0], similarity)
    assert scores["top1"] == pytest.approx(1 / 3) and scores["chance"] == pytest.approx(2 / 4)
    assert scores["top1_with_font"] == pytest.approx(1 / 3)
    assert scores["wrong_color"] == pytest.approx(1 / 3) and scores["wrong_character"] == pytest.approx(1 / 3)
    assert scores["wrong_style"] == 0 and scores["wrong_font"] == 0
    sans = replace(query, font="cm-sans")  # another font than the caption's: right, unless the font is judged
    scores = retrieval_scores([query, sans], [0], torch.tensor([[0.0, 1.0]]))
    assert scores["top1"] == 1.0 and scores["top1_with_font"] == 0.0 and scores["wrong_font"] == 1.0
    named_paper = replace(query, caption="a bold letter Q, red on white, Times-like serif font")
    assert retrieval_scores([named_paper, other_paper], [0], torch.tensor([[0.0, 1.0]]))["top1"] == 0.0
    assert names_every_attribute(query) and names_every_attribute(named_paper)
    assert not names_every_attribute(replace(query, caption="letter Q"))
    assert not names_every_attribute(replace(query, style="regular", caption="a red Times-like serif letter Q"))


def test_grouped_batches_keep_groups_whole():
    from diffusion_canon.clip import training

    seen = []

    class Recorder(torch.nn.Module):  # records which pairs each step's batch holds
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))

        def forward(self, input_ids, attention_mask, pixel_values, return_loss):
            seen.append((pixel_values[:, 0, 0, 0] * 255).round().long().tolist())
            return type("Out", (), {"loss": self.weight * 0 + pixel_values.sum() * 0 + self.weight ** 2})()

    images = torch.arange(24, dtype=torch.float32).view(24, 1, 1, 1).expand(24, 3, 32, 32) / 255.0
    tok = build_glyph_tokenizer(captions=["a red square"])
    processor = glyph_clip_image_processor(32)
    processor.do_normalize = False
    training.train_glyph_clip(images, ["a red square"] * 24, tok, model=Recorder(), image_processor=processor,
                              num_steps=5, batch_size=10, group_size=4)
    for batch in seen:  # 10 rounds down to 2 whole groups of 4
        assert len(batch) == 8
        assert all(batch[i : i + 4] == list(range(batch[i], batch[i] + 4)) and batch[i] % 4 == 0
                   for i in range(0, 8, 4))
    with pytest.raises(ValueError, match="group_size"):
        training.train_glyph_clip(images, ["a red square"] * 24, tok, model=Recorder(), group_size=5)
