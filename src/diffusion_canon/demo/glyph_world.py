"""The glyph world in the demo gallery: every font and style, samples of the train and held-out splits, aligned
16/64 px pairs and example captions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..image_grid import image_grid
from .section import DemoSection


def glyph_world_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo section: the data every default is trained on (needs no pipeline folder)."""
    from ..data import CHARACTERS, FONT_STYLES, HELD_OUT_FONTS, HELD_OUT_STYLES, GlyphSpec, load_glyphs, render_glyph

    rows = [(font, style) for font, styles in FONT_STYLES.items() for style in styles]
    specimen = [
        render_glyph(GlyphSpec(c, font, style, "black", "white", 0.0, 1.0, (0.0, 0.0), ""), 32)[32]
        for font, style in rows
        for c in CHARACTERS
    ]
    image_grid(specimen, len(CHARACTERS), scale=1, gap=1).save(output / "glyph_fonts.png")
    train = load_glyphs(num_images=96, seed=0)
    image_grid(train["image"], 12, scale=2, gap=2).save(output / "glyph_train.png")
    held = load_glyphs(split="held_out", num_images=48, seed=0)
    image_grid(held["image"], 12, scale=2, gap=2).save(output / "glyph_held_out.png")
    pairs = load_glyphs(resolutions=(16, 64), num_images=8, seed=0)
    enlarged = [image.resize((64, 64), Image.Resampling.NEAREST) for image in pairs["image_16"]]
    image_grid(enlarged + list(pairs["image_64"]), 8, scale=2, gap=2).save(output / "glyph_pairs.png")
    font_rows = ", ".join(f"{font}/{style}" for font, style in rows)
    return DemoSection(
        title="The glyph world",
        description=(
            "Characters 0-9 and A-Z drawn offline by Pillow with the fonts inside matplotlib: "
            f"{len(FONT_STYLES)} families, {len(rows)} font/style faces. Held out of training: fonts "
            f"{', '.join(HELD_OUT_FONTS)} and styles {', '.join(HELD_OUT_STYLES)} (the fine-tuning subjects). "
            "Each image has a caption for text conditioning."
        ),
        images=[
            ("glyph_fonts.png", f"every face, one row each ({font_rows})"),
            ("glyph_train.png", "load_glyphs(split='train', seed=0): the first 96 images"),
            ("glyph_held_out.png", "load_glyphs(split='held_out', seed=0)"),
            ("glyph_pairs.png", "load_glyphs(resolutions=(16, 64)): aligned 16 px (top, enlarged) and 64 px pairs"),
        ],
        table=[["index", "caption"]] + [[str(i), caption] for i, caption in enumerate(train["caption"][:12])],
    )
