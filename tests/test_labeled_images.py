"""Class-labelled images: the loader takes plain values; the scripts' flags map onto them one to one."""

import argparse

import pytest

from diffusion_canon.data.labeled_images import class_labels, load_labeled_images
from diffusion_canon.training.labeled_image_args import add_labeled_image_args, labeled_image_options


def parse(argv):
    parser = argparse.ArgumentParser()
    add_labeled_image_args(parser, resolution=16)
    return parser.parse_args(argv)


def test_plain_values_select_the_glyph_world():
    dataset = load_labeled_images(resolution=16, characters="AB7", colors=["red"], backgrounds=["white"],
                                  num_images=6, data_seed=3, split="validation")
    assert len(dataset) == 6 and dataset[0]["image"].size == (16, 16)
    assert set(dataset["color"]) == {"red"} and set(dataset["background"]) == {"white"}
    labels, names = class_labels(dataset, "label")
    assert names == ["7", "A", "B"] and sorted(set(labels)) == [0, 1, 2]


def test_flags_give_the_loader_keywords():
    options = labeled_image_options(parse(["--characters", "AB", "--colors", "red, blue", "--num_images", "4"]))
    assert options == {"dataset_name": None, "train_data_dir": None, "resolution": 16, "characters": "AB",
                       "colors": ["red", "blue"], "backgrounds": None, "num_images": 4, "data_seed": 0}
    flagged = load_labeled_images(**options)
    plain = load_labeled_images(resolution=16, characters="AB", colors=["red", "blue"], num_images=4)
    assert flagged["caption"] == plain["caption"]


@pytest.mark.parametrize("kwargs, match", [
    ({"train_data_dir": "/nonexistent", "dataset_name": "x"}, "not both"),
    ({"train_data_dir": "/nonexistent/folder"}, "--train_data_dir '/nonexistent/folder' is not an existing folder"),
    ({"characters": "ab?"}, r"--characters 'ab\?': unknown characters"),
])
def test_bad_values_name_the_flag(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_labeled_images(**kwargs)


def test_no_namespace():
    with pytest.raises(TypeError):
        load_labeled_images(parse([]))  # keyword-only: an argparse namespace is no longer accepted
