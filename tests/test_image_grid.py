"""The package's one image grid: layout, the input kinds every caller passes, and clear errors."""

import numpy as np
import pytest
from PIL import Image

from diffusion_canon.image_grid import GAP_GREY, image_grid
from diffusion_canon.training import image_grid as training_image_grid


def test_layout_scale_gap_and_empty_cells():
    tiles = [np.full((3, 3, 3), i * 40, np.uint8) for i in range(5)]
    sheet = np.asarray(image_grid(tiles, columns=2, scale=2, gap=1))
    assert sheet.shape == (3 * 7 + 1, 2 * 7 + 1, 3)
    assert (sheet[1:7, 8:14] == 40).all() and (sheet[15:21, 1:7] == 160).all()
    assert (sheet[15:21, 8:14] == GAP_GREY).all()  # the empty sixth cell is background
    assert (sheet[0] == GAP_GREY).all() and (sheet[:, 7] == GAP_GREY).all()  # border and gaps


def test_default_is_a_near_square_sheet_without_gaps():
    tiles = [Image.new("RGB", (4, 2), (10 * i, 0, 0)) for i in range(5)]
    sheet = image_grid(tiles)  # ceil(sqrt(5)) = 3 columns, 2 rows, no enlargement, no gap
    assert sheet.size == (12, 4)
    assert sheet.getpixel((8, 0)) == (20, 0, 0) and sheet.getpixel((5, 3)) == (40, 0, 0)
    assert sheet.getpixel((11, 3)) == GAP_GREY
    assert image_grid(tiles, background="white").getpixel((11, 3)) == (255, 255, 255)
    assert training_image_grid is image_grid  # the training core re-exports the same function


def test_input_kinds_agree():
    """PIL (any mode), uint8 and float [0, 1] arrays, a (N, H, W, C) batch and grey (H, W) give the same sheet."""
    grey = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    expected = np.asarray(image_grid([rgb, rgb], 2, scale=3, gap=2))
    for images in ([Image.fromarray(grey), Image.fromarray(rgb).convert("RGBA")], [grey, grey],
                   np.stack([rgb, rgb]), np.stack([rgb, rgb]).astype(np.float32) / 255, (x for x in [rgb, rgb])):
        assert (np.asarray(image_grid(images, 2, scale=3, gap=2)) == expected).all()


def test_tiles_take_the_first_size():
    sheet = image_grid([Image.new("RGB", (4, 4), "red"), Image.new("RGB", (8, 2), "blue")], 2, scale=2)
    assert sheet.size == (16, 8) and sheet.getpixel((15, 7)) == (0, 0, 255)


@pytest.mark.parametrize("kwargs, match", [
    ({"images": []}, "at least one image"),
    ({"columns": 0}, "columns must be an int >= 1, got 0"),
    ({"scale": 1.5}, "scale must be an int >= 1, got 1.5"),
    ({"gap": -1}, "gap must be an int >= 0, got -1"),
    ({"images": [np.zeros((2, 2, 2), np.uint8)]}, r"\(H, W\) or \(H, W, C\)"),
])
def test_bad_arguments_name_themselves(kwargs, match):
    with pytest.raises(ValueError, match=match):
        image_grid(**{"images": [Image.new("RGB", (2, 2))], **kwargs})


def test_bad_types():
    with pytest.raises(TypeError, match="PIL images or numpy arrays, got str"):
        image_grid(["a.png"])
    with pytest.raises(TypeError, match="uint8 or float"):
        image_grid([np.zeros((2, 2, 3), np.int64)])
