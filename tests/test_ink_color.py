"""The ink-colour read-back against the renderer's own ink (the glyph world's specs are the ground truth)."""

import numpy as np
import pytest
import torch

from diffusion_canon.data.glyphs import BACKGROUNDS, COLORS, load_glyphs
from diffusion_canon.evaluation import color_accuracy, read_ink_colors


@pytest.mark.parametrize("split", ["train", "held_out"])  # held_out holds the thin outline strokes
@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_reads_every_rendering_right(split, resolution):
    ds = load_glyphs(resolution=resolution, seed=5, split=split, num_images=300)
    assert color_accuracy(ds["image"], ds["color"]) == 1.0


def test_every_ink_on_every_paper_it_is_drawn_on():
    for color in COLORS:
        for background in BACKGROUNDS:
            try:
                ds = load_glyphs(seed=2, colors=color, backgrounds=background, styles="regular", num_images=6)
            except ValueError:  # the pair lacks contrast and is never drawn
                continue
            assert read_ink_colors(ds["image"]) == [color] * 6, (color, background)


def test_batch_formats_agree_and_a_solid_image_is_not_misread_as_paper():
    ds = load_glyphs(seed=4, num_images=20)
    pixels = np.stack([np.asarray(image) for image in ds["image"]])
    expected = list(ds["color"])
    assert read_ink_colors(pixels) == expected  # uint8 NHWC
    assert read_ink_colors(pixels.astype(np.float32) / 255) == expected  # float NHWC
    assert read_ink_colors(torch.from_numpy(pixels).permute(0, 3, 1, 2) / 255.0) == expected  # float NCHW
    # an image whose centre is a red square on white paper reads red: the square is the farthest from the paper
    square = np.full((1, 32, 32, 3), 255, np.uint8)
    square[0, 10:22, 10:22] = COLORS["red"]
    assert read_ink_colors(square) == ["red"]


def test_unknown_colour_names_and_length_mismatch_are_errors():
    ds = load_glyphs(num_images=2)
    with pytest.raises(ValueError, match="palette names"):
        color_accuracy(ds["image"], ["crimson", "red"])
    with pytest.raises(ValueError, match="2 images but 1"):
        color_accuracy(ds["image"], ["red"])
