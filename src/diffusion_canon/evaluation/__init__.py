"""Evaluation: the glyph classifier (trained offline, cached), class accuracy, cFID in its feature space, the ink
colour read back from the pixels, and the round trip through a latent model's autoencoder."""

from .frechet import cfid, frechet_distance, glyph_features
from .glyph_classifier import (
    GlyphClassifier,
    class_accuracy,
    classifier_report,
    glyph_cache_dir,
    load_glyph_classifier,
    predict_glyphs,
    train_glyph_classifier,
)
from .images import images_to_tensor
from .ink_color import color_accuracy, read_ink_colors
from .latent_round_trip import vae_round_trip

__all__ = [
    "GlyphClassifier",
    "cfid",
    "class_accuracy",
    "color_accuracy",
    "classifier_report",
    "frechet_distance",
    "glyph_cache_dir",
    "glyph_features",
    "images_to_tensor",
    "load_glyph_classifier",
    "predict_glyphs",
    "read_ink_colors",
    "train_glyph_classifier",
    "vae_round_trip",
]
