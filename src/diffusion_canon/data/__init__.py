"""Data: the glyph world rendered offline (:mod:`.glyphs`), user image folders (:mod:`.image_folder`) and the glyph
BPE tokenizer (:mod:`.tokenizer`)."""

from . import glyphs, image_folder
from .glyphs import *  # noqa: F403 - the glyph world's public names, listed in glyphs.__all__
from .image_folder import load_image_folder
from .tokenizer import build_glyph_tokenizer

__all__ = [*glyphs.__all__, *image_folder.__all__, "build_glyph_tokenizer"]
