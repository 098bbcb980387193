"""The glyph world: characters rendered offline with the fonts that ship inside matplotlib.

No dataset can be downloaded here, so the project's default data is drawn on demand by Pillow from matplotlib's
``mpl-data/fonts/ttf`` directory. Every image is a function of ``(seed, split, index)`` and the selection arguments
alone, so any subset is reproducible and the same seed always gives the same pixels.

Names users type:

- ``font``: a family, lower-case and hyphenated: ``dejavu-sans``, ``dejavu-serif``, ``dejavu-mono``, ``stix``,
  ``cm-roman``, ``cm-sans``, ``cm-typewriter`` (``cm`` = Computer Modern). See :data:`FONTS`.
- ``style``: ``regular``, ``bold``, ``italic`` (DejaVu Sans calls it oblique), ``bold-italic`` and ``outline`` (the
  bold face drawn hollow). Not every family has every face; :data:`FONT_STYLES` lists what each one has.
- ``color``: the ink colour (:data:`COLORS`); ``background``: the paper colour (:data:`BACKGROUNDS`). Only pairs with
  enough luminance contrast are drawn (white ink appears on black paper only, for example).

Held out of ``split="train"`` (and of ``"validation"``/``"test"``), so that fine-tuning has genuinely new subjects:
the font family ``cm-typewriter`` (:data:`HELD_OUT_FONTS`, a DreamBooth subject) and the ``outline`` style
(:data:`HELD_OUT_STYLES`, a textual-inversion concept). ``split="held_out"`` draws only images that use one of them.

Rendering: the glyph is drawn once per (font file, character, canvas size) at 4x the target resolution, centred on its
ink box and scaled so that every family has the same cap height; each image then applies its own small jitter
(rotation, scale, shift) to that master mask, downsamples it with a Lanczos filter and mixes ink and paper colours
through it. With several ``resolutions`` all sizes come from one master mask, so a 16 -> 64 pair is the same glyph.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    import datasets

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
    "STYLE_WORDS",
    "alternatives",
    "font_path",
    "glyph_specs",
    "load_glyphs",
    "recaption",
    "render_glyph",
]

CHARACTERS: tuple[str, ...] = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")

# family -> style -> file in matplotlib's mpl-data/fonts/ttf. Symbol-only fonts (cmex10, cmsy10, STIXSize*,
# STIXNonUni*, LastResort) and cmmi10 (old-style digits) are left out: they do not draw plain letters and digits.
_FONT_FILES: dict[str, dict[str, str]] = {
    "dejavu-sans": {
        "regular": "DejaVuSans.ttf",
        "bold": "DejaVuSans-Bold.ttf",
        "italic": "DejaVuSans-Oblique.ttf",
        "bold-italic": "DejaVuSans-BoldOblique.ttf",
    },
    "dejavu-serif": {
        "regular": "DejaVuSerif.ttf",
        "bold": "DejaVuSerif-Bold.ttf",
        "italic": "DejaVuSerif-Italic.ttf",
        "bold-italic": "DejaVuSerif-BoldItalic.ttf",
    },
    "dejavu-mono": {
        "regular": "DejaVuSansMono.ttf",
        "bold": "DejaVuSansMono-Bold.ttf",
        "italic": "DejaVuSansMono-Oblique.ttf",
        "bold-italic": "DejaVuSansMono-BoldOblique.ttf",
    },
    "stix": {
        "regular": "STIXGeneral.ttf",
        "bold": "STIXGeneralBol.ttf",
        "italic": "STIXGeneralItalic.ttf",
        "bold-italic": "STIXGeneralBolIta.ttf",
    },
    "cm-roman": {"regular": "cmr10.ttf", "bold": "cmb10.ttf", "italic": "cmti10.ttf"},
    "cm-sans": {"regular": "cmss10.ttf"},
    "cm-typewriter": {"regular": "cmtt10.ttf"},
}
FONTS: tuple[str, ...] = tuple(_FONT_FILES)
STYLES: tuple[str, ...] = ("regular", "bold", "italic", "bold-italic", "outline")
# every family can be drawn in outline (its bold face when it has one)
FONT_STYLES: dict[str, tuple[str, ...]] = {
    font: tuple(style for style in STYLES if style in files or style == "outline")
    for font, files in _FONT_FILES.items()
}
HELD_OUT_FONTS: tuple[str, ...] = ("cm-typewriter",)
HELD_OUT_STYLES: tuple[str, ...] = ("outline",)
# the fonts of train/validation/test, in which the fine-tuning demos and make-base draw the held-out style
TRAINING_FONTS: tuple[str, ...] = tuple(font for font in FONTS if font not in HELD_OUT_FONTS)

COLORS: dict[str, tuple[int, int, int]] = {
    "black": (20, 20, 20),
    "red": (210, 35, 35),
    "green": (30, 140, 55),
    "blue": (35, 70, 205),
    "orange": (235, 120, 10),
    "purple": (125, 45, 165),
    "brown": (125, 75, 35),
    "yellow": (240, 210, 30),
    "white": (245, 245, 245),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "cream": (250, 240, 215),
    "light-gray": (215, 215, 215),
    "light-blue": (205, 225, 245),
    "black": (15, 15, 15),
}

SPLITS: tuple[str, ...] = ("train", "validation", "test", "held_out")
DEFAULT_NUM_IMAGES: dict[str, int] = {"train": 5000, "validation": 500, "test": 1000, "held_out": 1000}
_SPLIT_STREAM = {split: i for i, split in enumerate(SPLITS)}  # keeps every split's renders disjoint

_MIN_CONTRAST = 2.8  # WCAG contrast ratio a colour pair needs to be drawn
_SUPERSAMPLING = 4  # master mask size / target resolution
_CAP_HEIGHT = 0.56  # cap height as a fraction of the canvas, the same in every family
_ROTATION_DEGREES = 6.0
_SCALE_RANGE = (0.9, 1.08)
_SHIFT = 0.06  # fraction of the canvas

# Words used in captions.
_FONT_WORDS: dict[str, tuple[str, ...]] = {
    "dejavu-sans": ("sans-serif", "DejaVu Sans"),
    "dejavu-serif": ("serif", "DejaVu Serif"),
    "dejavu-mono": ("monospace", "DejaVu Sans Mono"),
    "stix": ("Times-like serif", "STIX"),
    "cm-roman": ("Computer Modern serif", "Computer Modern Roman"),
    "cm-sans": ("Computer Modern sans-serif", "Computer Modern Sans"),
    "cm-typewriter": ("typewriter", "Computer Modern Typewriter"),
}
STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "regular": ("", "regular", "plain"),
    "bold": ("bold", "heavy"),
    "italic": ("italic", "slanted"),
    "bold-italic": ("bold italic",),
    "outline": ("outlined", "hollow"),
}
_CAPTION_TEMPLATES: tuple[str, ...] = (
    "{a} {color} {style} {font} {kind} {char}",
    "the {kind} {char} in {color} {style} {font}",
    "{a} {style} {kind} {char}, {color} on {background}, {font} font",
    "{color} {kind} {char} written in {style} {font} type",
    "{a} {kind} {char} in {font_name}, {style}, {color} ink on a {background} background",
    "{kind} {char}",
)


@dataclass(frozen=True)
class GlyphSpec:
    """Everything that determines one glyph image: its attributes, its jitter and its caption."""

    character: str
    font: str
    style: str
    color: str
    background: str
    rotation: float  # degrees, counter-clockwise
    scale: float
    shift: tuple[float, float]  # (x, y) as fractions of the canvas
    caption: str

    @property
    def label(self) -> int:
        return CHARACTERS.index(self.character)


def load_glyphs(
    resolution: int = 32,
    seed: int = 0,
    split: str = "train",
    characters: Iterable[str] | str | None = None,
    fonts: Iterable[str] | str | None = None,
    colors: Iterable[str] | str | None = None,
    styles: Iterable[str] | str | None = None,
    num_images: int | None = None,
    resolutions: Sequence[int] | None = None,
    backgrounds: Iterable[str] | str | None = None,
) -> datasets.Dataset:
    """Render the glyph world as a ``datasets.Dataset``.

    Args:
        resolution: side of the square RGB images, an int >= 8.
        seed: the same seed (with the same arguments) gives identical pixels; index ``i`` depends only on
            ``(seed, split, i)`` and the selection.
        split: ``"train"``, ``"validation"``, ``"test"`` (disjoint renders of the same fonts and styles) or
            ``"held_out"`` (only images in :data:`HELD_OUT_FONTS` or :data:`HELD_OUT_STYLES`).
        characters, fonts, colors, styles, backgrounds: restrict the selection (None = everything the split allows).
            A string is one name (for ``characters`` a string is its characters, e.g. ``"AB7"``).
        num_images: dataset length; default :data:`DEFAULT_NUM_IMAGES` of the split (5000 for train). Characters
            cycle through the selection (``label = i mod len(characters)``), so classes are balanced.
        resolutions: several sizes at once, e.g. ``(16, 64)``: adds aligned columns ``image_16`` and ``image_64``
            (the same glyph from one master render) and ``image`` is the largest. Overrides ``resolution``.

    Returns:
        ``datasets.Dataset`` with columns ``image`` (PIL RGB, ``resolution`` x ``resolution``), ``label``
        (``ClassLabel`` over :data:`CHARACTERS`), ``caption``, ``font``, ``style``, ``color``, ``background``.
    """
    import datasets

    sizes = _check_resolutions(resolution, resolutions)
    specs = glyph_specs(
        num_images=num_images,
        seed=seed,
        split=split,
        characters=characters,
        fonts=fonts,
        colors=colors,
        styles=styles,
        backgrounds=backgrounds,
    )
    columns: dict[str, list] = {}
    for spec in specs:
        rendered = render_glyph(spec, sizes)
        for size in sizes if resolutions is not None else ():
            columns.setdefault(f"image_{size}", []).append(Image.fromarray(rendered[size]))
        columns.setdefault("image", []).append(Image.fromarray(rendered[sizes[-1]]))
    columns["label"] = [spec.label for spec in specs]
    for name in ("caption", "font", "style", "color", "background"):
        columns[name] = [getattr(spec, name) for spec in specs]
    features = datasets.Features(
        {
            **{name: datasets.Image() for name in columns if name.startswith("image")},
            "label": datasets.ClassLabel(names=list(CHARACTERS)),
            **{name: datasets.Value("string") for name in ("caption", "font", "style", "color", "background")},
        }
    )
    return datasets.Dataset.from_dict(columns, features=features, split=datasets.NamedSplit(split))


def glyph_specs(
    num_images: int | None = None,
    seed: int = 0,
    split: str = "train",
    characters: Iterable[str] | str | None = None,
    fonts: Iterable[str] | str | None = None,
    colors: Iterable[str] | str | None = None,
    styles: Iterable[str] | str | None = None,
    backgrounds: Iterable[str] | str | None = None,
) -> list[GlyphSpec]:
    """The attributes, jitter and caption of each image :func:`load_glyphs` would draw (same arguments)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if num_images is None:
        num_images = DEFAULT_NUM_IMAGES[split]
    if not isinstance(num_images, (int, np.integer)) or isinstance(num_images, bool) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
    chars = _select("characters", characters, CHARACTERS)
    font_styles = _font_style_pairs(split, _select("fonts", fonts, FONTS), _select("styles", styles, STYLES))
    inks = _ink_paper_pairs(
        _select("colors", colors, tuple(COLORS)), _select("backgrounds", backgrounds, tuple(BACKGROUNDS))
    )
    chosen_fonts = list(font_styles)
    chosen_inks = list(inks)
    specs = []
    for index in range(int(num_images)):
        rng = np.random.default_rng([int(seed), _SPLIT_STREAM[split], index])
        font = chosen_fonts[rng.integers(len(chosen_fonts))]
        style = font_styles[font][rng.integers(len(font_styles[font]))]
        color = chosen_inks[rng.integers(len(chosen_inks))]
        background = inks[color][rng.integers(len(inks[color]))]
        rotation = float(rng.uniform(-_ROTATION_DEGREES, _ROTATION_DEGREES))
        scale = float(rng.uniform(*_SCALE_RANGE))
        shift = (float(rng.uniform(-_SHIFT, _SHIFT)), float(rng.uniform(-_SHIFT, _SHIFT)))
        character = chars[index % len(chars)]
        caption = _caption(rng, character, font, style, color, background)
        specs.append(GlyphSpec(character, font, style, color, background, rotation, scale, shift, caption))
    return specs


def alternatives(spec: GlyphSpec, attribute: str, split: str = "train") -> tuple[str, ...]:
    """The other values ``attribute`` (``character``, ``color``, ``style`` or ``font``) can take in ``split`` with the
    rest of ``spec`` kept: a colour must contrast with the paper, a style or font must be a pair the split draws.
    Empty when there is none (a family with one face has no other style)."""
    if attribute == "character":
        values = CHARACTERS
    elif attribute == "color":
        values = tuple(c for c in COLORS if _contrast(COLORS[c], BACKGROUNDS[spec.background]) >= _MIN_CONTRAST)
    elif attribute == "style":
        values = _font_style_pairs(split, FONTS, STYLES).get(spec.font, ())
    elif attribute == "font":
        values = tuple(font for font, styles in _font_style_pairs(split, FONTS, STYLES).items() if spec.style in styles)
    else:
        raise ValueError(f"attribute must be one of ['character', 'color', 'style', 'font'], got {attribute!r}")
    return tuple(value for value in values if value != getattr(spec, attribute))


def recaption(spec: GlyphSpec, caption_seed: int | Sequence[int], name_style: bool | str = True,
              **changes: str) -> GlyphSpec:
    """``spec`` with ``changes`` applied (e.g. ``color="red"``) and a caption drawn from ``caption_seed``; the jitter
    is kept. The same ``caption_seed`` picks the same template, so two specs recaptioned with one seed have captions
    that differ mostly in the words of the attributes that differ: text-side hard negatives. ``name_style=False``
    leaves the style's word out, as a caption of a regular glyph may ("a red serif letter Q"); a string names the
    style by that one of its words (``"hollow"`` for ``outline``) instead of a word drawn at random."""
    spec = dataclasses.replace(spec, **changes)
    if isinstance(name_style, str) and name_style not in STYLE_WORDS[spec.style]:
        raise ValueError(f"name_style must be one of the words of style {spec.style!r}, "
                         f"{list(STYLE_WORDS[spec.style])}, or a bool; got {name_style!r}")
    rng = np.random.default_rng(caption_seed)
    return dataclasses.replace(spec, caption=_caption(rng, spec.character, spec.font, spec.style, spec.color,
                                                      spec.background, name_style))


def render_glyph(spec: GlyphSpec, resolutions: int | Sequence[int] = 32) -> dict[int, np.ndarray]:
    """Draw one glyph at each resolution from a single master mask.

    Returns:
        ``{resolution: uint8 array (resolution, resolution, 3)}``.
    """
    sizes = [resolutions] if isinstance(resolutions, (int, np.integer)) else sorted(set(resolutions))
    canvas = _SUPERSAMPLING * sizes[-1]
    master = _glyph_mask(spec.font, spec.style, spec.character, canvas)
    # Inverse affine map (output pixel -> master pixel): rotate and scale about the centre, then shift.
    angle = np.deg2rad(spec.rotation)
    cos, sin = np.cos(angle) / spec.scale, np.sin(angle) / spec.scale
    centre = canvas / 2
    out_x, out_y = centre + spec.shift[0] * canvas, centre + spec.shift[1] * canvas
    matrix = (cos, -sin, centre - cos * out_x + sin * out_y, sin, cos, centre - sin * out_x - cos * out_y)
    mask = master.transform((canvas, canvas), Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR)
    ink = np.asarray(COLORS[spec.color], dtype=np.float32)
    paper = np.asarray(BACKGROUNDS[spec.background], dtype=np.float32)
    images = {}
    for size in sizes:
        alpha = np.asarray(mask.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)[..., None] / 255
        images[int(size)] = np.rint(paper + (ink - paper) * alpha).astype(np.uint8)
    return images


def font_path(font: str, style: str) -> str:
    """The TrueType file inside matplotlib that draws ``font`` in ``style`` (outline uses the boldest face)."""
    if style not in FONT_STYLES.get(font, ()):
        raise ValueError(f"font {font!r} has no style {style!r}; it has {list(FONT_STYLES.get(font, ()))}")
    files = _FONT_FILES[font]
    file = files.get("bold", files["regular"]) if style == "outline" else files[style]
    return os.path.join(_font_dir(), file)


@functools.cache
def _font_dir() -> str:
    import matplotlib  # the package only, never pyplot

    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf")


@functools.lru_cache(maxsize=4096)
def _glyph_mask(font: str, style: str, character: str, canvas: int) -> Image.Image:
    """The glyph as an 8-bit mask, ink box centred on a ``canvas``-sized square, cap height _CAP_HEIGHT * canvas."""
    path = font_path(font, style)
    size = max(8, round(_CAP_HEIGHT * canvas / _cap_height_per_pixel(path)))
    face = _truetype(path, size)
    stroke = max(1, round(canvas / 40)) if style == "outline" else 0
    left, top, right, bottom = face.getbbox(character, stroke_width=stroke)
    glyph = Image.new("L", (right - left, bottom - top), 0)
    draw = ImageDraw.Draw(glyph)
    if stroke:  # ink ring around the glyph, the glyph itself left as paper
        draw.text((-left, -top), character, font=face, fill=0, stroke_width=stroke, stroke_fill=255)
    else:
        draw.text((-left, -top), character, font=face, fill=255)
    box = glyph.getbbox()
    if box is None:
        raise ValueError(f"font {font!r} ({path}) draws nothing for character {character!r}")
    glyph = glyph.crop(box)
    mask = Image.new("L", (canvas, canvas), 0)
    mask.paste(glyph, ((canvas - glyph.width) // 2, (canvas - glyph.height) // 2))
    return mask


@functools.cache
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@functools.cache
def _cap_height_per_pixel(path: str) -> float:
    """Height of the ink of 'H' per pixel of font size, so every family can be drawn at the same cap height."""
    left, top, right, bottom = _truetype(path, 200).getbbox("H")
    return (bottom - top) / 200


def _check_resolutions(resolution: int, resolutions: Sequence[int] | None) -> list[int]:
    sizes = [resolution] if resolutions is None else list(resolutions)
    name = "resolution" if resolutions is None else "resolutions"
    if not sizes:
        raise ValueError("resolutions must name at least one size, got an empty sequence")
    for size in sizes:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
            raise ValueError(f"{name} must be an int >= 8 (or a sequence of them), got {size!r}")
    return sorted({int(size) for size in sizes})


def _select(argument: str, chosen: Iterable[str] | str | None, allowed: tuple[str, ...]) -> tuple[str, ...]:
    if chosen is None:
        return allowed
    names = tuple(chosen) if argument == "characters" or not isinstance(chosen, str) else (chosen,)
    if not names:
        raise ValueError(f"{argument} is empty; choose from {list(allowed)} or pass None for all")
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown name in {argument}: {name!r}; allowed: {list(allowed)}")
    return tuple(dict.fromkeys(names))


def _font_style_pairs(split: str, fonts: tuple[str, ...], styles: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """font -> the styles the split may draw it in."""
    held_out = split == "held_out"
    pairs = {}
    for font in fonts:
        allowed = tuple(
            style
            for style in styles
            if style in FONT_STYLES[font] and held_out == (font in HELD_OUT_FONTS or style in HELD_OUT_STYLES)
        )
        if allowed:
            pairs[font] = allowed
    if not pairs:
        rule = (
            f"split 'held_out' draws only fonts {list(HELD_OUT_FONTS)} or styles {list(HELD_OUT_STYLES)}"
            if held_out
            else f"split {split!r} excludes held-out fonts {list(HELD_OUT_FONTS)} and styles {list(HELD_OUT_STYLES)}"
        )
        raise ValueError(
            f"fonts={list(fonts)} with styles={list(styles)} leaves no images in split {split!r}: {rule}; "
            f"styles each font has: {FONT_STYLES}"
        )
    return pairs


def _ink_paper_pairs(colors: tuple[str, ...], backgrounds: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """ink colour -> the backgrounds it contrasts with."""
    pairs = {}
    for color in colors:
        papers = tuple(b for b in backgrounds if _contrast(COLORS[color], BACKGROUNDS[b]) >= _MIN_CONTRAST)
        if papers:
            pairs[color] = papers
    if not pairs:
        drawable = {c: _ink_paper_pairs((c,), tuple(BACKGROUNDS))[c] for c in COLORS}
        raise ValueError(
            f"colors={list(colors)} with backgrounds={list(backgrounds)} leaves no images: no pair has enough "
            f"contrast; the backgrounds each colour is drawn on: {drawable}"
        )
    return pairs


def _contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    def luminance(rgb: tuple[int, int, int]) -> float:  # WCAG relative luminance
        linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    darker, lighter = sorted((luminance(a), luminance(b)))
    return (lighter + 0.05) / (darker + 0.05)


def _caption(rng: np.random.Generator, character: str, font: str, style: str, color: str, background: str,
             name_style: bool | str = True) -> str:
    template = _CAPTION_TEMPLATES[rng.integers(len(_CAPTION_TEMPLATES))]
    kind = "digit" if character.isdigit() else ("letter", "capital letter", "uppercase letter")[rng.integers(3)]
    words = {
        "kind": kind,
        "char": character,
        "color": color,
        "background": background.replace("-", " "),
        "style": _style_word(rng, style, name_style),
        "font": _FONT_WORDS[font][0],
        "font_name": _FONT_WORDS[font][1],
    }
    text = " ".join(template.format(a="{a}", **words).split()).replace(" ,", ",").replace(",,", ",")
    if "{a}" in text:
        following = text.split("{a} ", 1)[1]
        text = text.replace("{a}", "an" if following[0].lower() in "aeiou" else "a", 1)
    return text


def _style_word(rng: np.random.Generator, style: str, name_style: bool | str) -> str:
    """The caption's word for ``style``: ``name_style`` itself when it is a word, else one drawn at random, or none."""
    if isinstance(name_style, str):
        return name_style
    return STYLE_WORDS[style][rng.integers(len(STYLE_WORDS[style]))] if name_style else ""
