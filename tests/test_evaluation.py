"""The glyph classifier, class accuracy and cFID.

The first test that needs the classifier trains it into the user cache (about a minute on one core) unless it is
there already; every later use in the session loads it from memory.
"""

import json

import numpy as np
import pytest
import torch
from PIL import ImageFilter

from diffusion_canon.data import CHARACTERS, FONTS, HELD_OUT_FONTS, load_glyphs
from diffusion_canon.evaluation import (
    GlyphClassifier,
    cfid,
    class_accuracy,
    classifier_report,
    frechet_distance,
    images_to_tensor,
    load_glyph_classifier,
    predict_glyphs,
    train_glyph_classifier,
)
from diffusion_canon.evaluation import glyph_classifier as glyph_classifier_module


@pytest.fixture(scope="module")
def real():
    return load_glyphs(split="test", num_images=600, seed=0)


@pytest.fixture(scope="module")
def real_other_seed():
    return load_glyphs(split="test", num_images=600, seed=1)


# ---- Fréchet distance against closed forms -------------------------------------------------------------------


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_one_dimension():
    # W2² between N(m1, s1²) and N(m2, s2²) is (m1 - m2)² + (s1 - s2)²
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9 + 1)


def test_frechet_diagonal_covariances():
    rng = np.random.default_rng(0)
    a, b, mu1, mu2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16), rng.normal(size=16), rng.normal(size=16)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_non_commuting_two_by_two():
    # In 2-D, Tr sqrt(M) = sqrt(Tr M + 2 sqrt(det M)) for M with the eigenvalues of s1 s2 (both non-negative).
    s1, s2 = np.array([[2.0, 0.9], [0.9, 1.0]]), np.array([[0.5, -0.3], [-0.3, 3.0]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    product = s1 @ s2
    cross = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = np.trace(s1) + np.trace(s2) - 2 * cross + 0.25
    assert frechet_distance([0.0, 0.5], s1, [0.0, 0.0], s2) == pytest.approx(expected, rel=1e-10)


def test_frechet_matches_scipy_sqrtm_in_64_dimensions():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    s1, s2, mu1, mu2 = random_spd(rng, 64), random_spd(rng, 64), rng.normal(size=64), rng.normal(size=64)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_rank_deficient_and_identical():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 64))  # 10 samples in 64 dims: covariance of rank 9
    sigma = np.cov(x, rowvar=False)
    assert abs(frechet_distance(x.mean(0), sigma, x.mean(0), sigma)) < 1e-8
    assert np.isfinite(frechet_distance(x.mean(0), sigma, np.zeros(64), np.eye(64)))


def test_frechet_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# ---- image formats -----------------------------------------------------------------------------------------------


def test_every_image_format_gives_the_same_batch():
    pil = list(load_glyphs(num_images=4)["image"])
    uint8 = np.stack([np.asarray(image) for image in pil])
    reference = torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255
    for batch in (pil, uint8, uint8 / 255.0, torch.from_numpy(uint8).permute(0, 3, 1, 2), reference):
        torch.testing.assert_close(images_to_tensor(batch, 32), reference, atol=1e-6, rtol=0)
    assert images_to_tensor(reference[:, :1], 32).shape == (4, 3, 32, 32)
    assert images_to_tensor(torch.rand(2, 3, 64, 64), 32).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    "images, error, words",
    [
        (torch.rand(2, 3, 32, 32) * 2 - 1, ValueError, ["[0, 1]", "(x + 1) / 2"]),
        (np.zeros((32, 32, 3)), ValueError, ["(N, H, W, C)", "(32, 32, 3)"]),
        (torch.zeros(2, 4, 32, 32), ValueError, ["channels", "(2, 4, 32, 32)"]),
        ([1, 2], TypeError, ["PIL", "int"]),
        ("images", TypeError, ["PIL", "str"]),
        (torch.zeros(2, 3, 8, 8, dtype=torch.int64), TypeError, ["uint8", "int64"]),
    ],
)
def test_bad_images_are_clear_errors(images, error, words):
    with pytest.raises(error) as raised:
        images_to_tensor(images, 32)
    for word in words:
        assert word in str(raised.value), (word, str(raised.value))


# ---- the classifier ------------------------------------------------------------------------------------------------


def test_training_is_deterministic_by_seed():
    small = {"train_images": 256, "held_out_images": 64, "epochs": 1, "batch_size": 64, "evaluation_images": 36}
    first, report = train_glyph_classifier(seed=7, **small)
    second, _ = train_glyph_classifier(seed=7, **small)
    third, _ = train_glyph_classifier(seed=8, **small)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), third.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert any(not torch.equal(a, c) for a, c in zip(first.state_dict().values(), third.state_dict().values()))
    assert {"train_seconds", "test_character_accuracy", "held_out_font_accuracy"} <= set(report)


def test_cache_is_filled_when_absent_and_reused(tmp_path, monkeypatch):
    calls = []

    def tiny_training():
        calls.append(1)
        torch.manual_seed(0)
        return GlyphClassifier(channels=(8,), feature_dim=8), {"train_seconds": 0.0}

    monkeypatch.setattr(glyph_classifier_module, "train_glyph_classifier", tiny_training)
    first = load_glyph_classifier.__wrapped__(tmp_path)
    second = load_glyph_classifier.__wrapped__(tmp_path)  # a new process would do this: load, not train
    assert calls == [1]
    folder = next(tmp_path.glob("glyph-classifier-v*/config.json")).parent
    assert (folder / "diffusion_pytorch_model.safetensors").exists()
    assert json.loads((folder / "training.json").read_text()) == {"train_seconds": 0.0}
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(first.run(x)[2], second.run(x)[2])


def test_character_accuracy_on_unseen_renders(real):
    assert class_accuracy(real["image"], real["label"]) >= 0.95
    held = load_glyphs(split="held_out", num_images=600, seed=0)
    assert class_accuracy(held["image"], held["label"]) >= 0.95
    # the held-out typewriter font is recognised as such (a DreamBooth subject must be measurable)
    typewriter = load_glyphs(split="held_out", fonts=HELD_OUT_FONTS, styles="regular", num_images=108, seed=0)
    assert class_accuracy(typewriter["image"], typewriter["font"], head="font") >= 0.9
    report = classifier_report()
    assert report["test_character_accuracy"] >= 0.95 and report["held_out_character_accuracy"] >= 0.95


def test_accuracy_falls_to_chance_with_wrong_labels(real):
    wrong = [(label + 1) % len(CHARACTERS) for label in real["label"][:200]]
    assert class_accuracy(real["image"][:200], wrong) < 0.1


def test_predict_glyphs_reads_names_and_agrees_with_class_accuracy(real):
    images, labels = real["image"][:100], real["label"][:100]
    prediction = predict_glyphs(images)
    assert len(prediction["character"]) == 100 and set(prediction["font"]) <= set(FONTS)
    by_name = np.mean([p == CHARACTERS[label] for p, label in zip(prediction["character"], labels)])
    assert class_accuracy(images, [CHARACTERS[label] for label in labels]) == pytest.approx(by_name)
    assert class_accuracy(images, labels) == pytest.approx(by_name)
    assert float(prediction["character_probability"].min()) > 0 and float(prediction["font_probability"].max()) <= 1


def test_class_accuracy_bad_labels():
    images = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="'a'"):
        class_accuracy(images, ["A", "a"])
    with pytest.raises(ValueError, match="head"):
        class_accuracy(images, [0, 1], head="colour")
    with pytest.raises(ValueError, match="3 entries"):
        class_accuracy(images, [0, 1, 2])


# ---- cFID ----------------------------------------------------------------------------------------------------------


def blurred(images, sigma):
    return [image.filter(ImageFilter.GaussianBlur(sigma)) for image in images]


def noisy(images, sigma):
    batch = np.stack([np.asarray(image) for image in images]) / 255.0
    noise = np.random.default_rng(0).normal(size=batch.shape)
    return np.clip(batch + sigma * noise, 0, 1)


def test_cfid_is_small_between_two_real_sets_and_symmetric(real, real_other_seed):
    a, b = list(real["image"]), list(real_other_seed["image"])
    same = cfid(a, b)
    assert same == pytest.approx(cfid(b, a), rel=1e-6)
    assert abs(cfid(a, a)) < 1e-6 * max(1.0, same)
    assert same < 0.5 * cfid(a, blurred(b, 0.6))


def test_cfid_grows_monotonically_with_blur(real, real_other_seed):
    a, b = list(real["image"]), list(real_other_seed["image"])
    scores = [cfid(a, b)] + [cfid(a, blurred(b, sigma)) for sigma in (0.6, 1.0, 1.5, 2.0)]
    assert all(x < y for x, y in zip(scores, scores[1:])), scores


def test_cfid_grows_monotonically_with_noise(real, real_other_seed):
    a, b = list(real["image"]), list(real_other_seed["image"])
    scores = [cfid(a, b)] + [cfid(a, noisy(b, sigma)) for sigma in (0.05, 0.1, 0.2, 0.3)]
    assert all(x < y for x, y in zip(scores, scores[1:])), scores


def test_cfid_needs_two_images():
    with pytest.raises(ValueError, match="images_b"):
        cfid(torch.rand(4, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_style_head_reads_the_held_out_outline_style():
    """The style read-back of textual inversion / LoRA of ``outline``: the held-out style in the training fonts is read
    as outline, the other styles are not, and the character and font heads of the two-head classifier are untouched."""
    from diffusion_canon.data import FONT_STYLES, STYLES

    outline = load_glyphs(split="held_out", styles="outline", num_images=300, seed=0)
    assert class_accuracy(outline["image"], ["outline"] * 300, head="style") >= 0.9
    filled = load_glyphs(split="test", num_images=300, seed=0)  # every style but outline
    prediction = predict_glyphs(filled["image"], load_glyph_classifier(styles=True))
    assert np.mean([style == "outline" for style in prediction["style"]]) <= 0.05
    assert np.mean([p == s for p, s in zip(prediction["style"], filled["style"])]) >= 0.8
    assert set(load_glyph_classifier(styles=True).config.styles) == set(STYLES) >= set(FONT_STYLES["dejavu-sans"])
    assert "style" not in predict_glyphs(filled["image"][:4])  # the default classifier has no style head
    with pytest.raises(ValueError, match="needs a classifier with a style head"):
        class_accuracy(filled["image"][:4], ["bold"] * 4, head="style", classifier=load_glyph_classifier())
    with pytest.raises(ValueError, match="unknown style label 'hollow'"):
        class_accuracy(filled["image"][:4], ["hollow"] * 4, head="style")
    report = classifier_report(styles=True)
    assert report["recipe"]["styles"] is True and report["held_out_style_accuracy"] >= 0.9
