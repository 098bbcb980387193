import json

import numpy as np
import pytest
from PIL import Image

from diffusion_canon.data import load_glyphs, load_image_folder


@pytest.fixture
def glyph_folder(tmp_path):
    """Six glyph PNGs with captions, plus a text file and a broken PNG that must be skipped."""
    folder = tmp_path / "glyphs"
    folder.mkdir()
    ds = load_glyphs(num_images=6, seed=2)
    rows = []
    for i, (image, caption) in enumerate(zip(ds["image"], ds["caption"])):
        image.save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "caption": caption})
    rows.append({"file_name": "broken.png", "caption": "a row whose image is broken"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder, ds


def test_images_and_captions_round_trip_and_junk_is_skipped_with_a_warning(glyph_folder, tmp_path):
    folder, ds = glyph_folder
    with pytest.warns(UserWarning, match="skipped 2 file") as record:
        loaded = load_image_folder(folder, cache_dir=tmp_path / "cache")
    message = str(record[0].message)
    assert "notes.txt" in message and "broken.png" in message and ".DS_Store" not in message
    assert len(loaded) == 6 and set(loaded.column_names) == {"image", "caption"}
    by_caption = {c: np.asarray(image) for c, image in zip(loaded["caption"], loaded["image"])}
    for caption, image in zip(ds["caption"], ds["image"]):
        np.testing.assert_array_equal(by_caption[caption], np.asarray(image))


def test_resolution_resizes_shorter_side_and_centre_crops(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    stripes = np.zeros((24, 72, 3), np.uint8)  # three 24x24 squares: red | green | blue
    stripes[:, :24, 0] = stripes[:, 24:48, 1] = stripes[:, 48:, 2] = 255
    Image.fromarray(stripes).save(folder / "wide.png")
    Image.fromarray(stripes[:, :24, 0]).save(folder / "grey.png")  # a 24x24 greyscale image of 255s
    loaded = load_image_folder(folder, resolution=16, cache_dir=tmp_path / "cache")
    assert all(image.mode == "RGB" and image.size == (16, 16) for image in loaded["image"])
    middle = [np.asarray(image) for image in loaded["image"] if np.asarray(image)[8, 8, 1] > 200]
    assert len(middle) == 2  # the green middle square survives the crop; the grey image is white
    green = next(image for image in middle if image[8, 8, 0] < 50)
    assert green[:, 2:-2, 1].min() > 200 and green[:, 2:-2, 0].max() < 50 and green[:, 2:-2, 2].max() < 50


def test_text_column_becomes_caption_and_caption_column_is_checked(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i * 50, 0, 0)).save(folder / f"{i}.png")
    rows = [{"file_name": f"{i}.png", "text": f"red level {i}", "prompt": f"p{i}"} for i in range(3)]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_image_folder(folder, cache_dir=tmp_path / "cache")
    assert sorted(loaded["caption"]) == ["red level 0", "red level 1", "red level 2"]
    assert sorted(load_image_folder(folder, caption_column="prompt", cache_dir=tmp_path / "cache")["caption"]) == [
        "p0", "p1", "p2"
    ]
    with pytest.raises(ValueError, match="caption_column 'title'.*metadata.jsonl"):
        load_image_folder(folder, caption_column="title", cache_dir=tmp_path / "cache")


def test_class_subfolders_without_metadata_give_labels(tmp_path):
    for name in ("cats", "dogs"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / "pets" / name / f"{i}.jpg")
    loaded = load_image_folder(tmp_path / "pets", cache_dir=tmp_path / "cache")
    assert len(loaded) == 4 and "caption" not in loaded.column_names
    assert sorted(loaded.features["label"].names) == ["cats", "dogs"]


def test_missing_empty_and_imageless_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_image_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.warns(UserWarning, match="a.txt"), pytest.raises(ValueError, match="no readable images"):
        load_image_folder(tmp_path / "text")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="file.png"):
        load_image_folder(tmp_path / "file.png")
    with pytest.raises(ValueError, match="resolution must be None or an int >= 8, got 4"):
        load_image_folder(tmp_path / "text", resolution=4)
