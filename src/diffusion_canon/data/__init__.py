"""Data: the glyph world rendered offline (:mod:`.glyphs`) and user image folders (:mod:`.image_folder`)."""

from .glyphs import (
    BACKGROUNDS,
    CHARACTERS,
    COLORS,
    DEFAULT_NUM_IMAGES,
    FONT_STYLES,
    FONTS,
    HELD_OUT_FONTS,
    HELD_OUT_STYLES,
    SPLITS,
    STYLES,
    GlyphSpec,
    glyph_specs,
    load_glyphs,
    render_glyph,
)
from .image_folder import load_image_folder

__all__ = [
    "BACKGROUNDS",
    "CHARACTERS",
    "COLORS",
    "DEFAULT_NUM_IMAGES",
    "FONTS",
    "FONT_STYLES",
    "GlyphSpec",
    "HELD_OUT_FONTS",
    "HELD_OUT_STYLES",
    "SPLITS",
    "STYLES",
    "glyph_specs",
    "load_glyphs",
    "load_image_folder",
    "render_glyph",
]
