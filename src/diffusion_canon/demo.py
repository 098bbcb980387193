"""`diffusion-canon demo`: a static gallery (index.html + PNGs) of what the project does.

The gallery is a list of sections. Each entry of :data:`SECTIONS` names a provider, ``"module:function"``; the
function takes the output folder and the folder of shipped pipelines (``pipelines/`` of the checkout, unless told
otherwise), writes its PNGs there and returns a :class:`DemoSection`. A pipeline adds itself
to the gallery by appending one entry. A provider that fails becomes an error box in the page and a non-zero exit
status, never a silently missing section.
"""

from __future__ import annotations

import html
import importlib
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .image_grid import image_grid

__all__ = ["SECTIONS", "DemoSection", "run_demo"]

SECTIONS: list[str] = [
    "diffusion_canon.demo:glyph_world_section",
    "diffusion_canon.demo:glyph_classifier_section",
    "diffusion_canon.pipelines.demo_adm:adm_glyphs_section",
    "diffusion_canon.pipelines.demo_cascade:cascade_section",
    "diffusion_canon.pipelines.demo_unclip:unclip_section",
    "diffusion_canon.finetune.showcase:fine_tuning_section",
]


@dataclass
class DemoSection:
    """One block of the gallery.

    ``images`` are ``(file name relative to the output folder, caption)``; ``table`` is a list of rows, the first
    being the header.
    """

    title: str
    description: str
    images: list[tuple[str, str]] = field(default_factory=list)
    table: list[list[str]] | None = None


def run_demo(output: str | Path = "outputs/demo", sections: Sequence[str] | None = None,
             pipelines: str | Path | None = None) -> tuple[Path, list[str]]:
    """Build the gallery from the pipeline folders in ``pipelines`` (default: the checkout's ``pipelines/``);
    returns the path of index.html and the providers that failed. Prints each section as it starts and ends."""
    from .checkout import pipelines_folder

    pipelines = pipelines_folder(pipelines)  # no checkout and no folder given: a clear error before any work
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    providers = SECTIONS if sections is None else sections
    blocks, failed = [], []
    for number, provider in enumerate(providers, 1):
        print(f"[{number}/{len(providers)}] {provider} ...", flush=True)
        start = time.perf_counter()
        try:
            module, function = provider.split(":")
            section = getattr(importlib.import_module(module), function)(output, pipelines)
            blocks.append(_section_html(section, time.perf_counter() - start))
            print(f"[{number}/{len(providers)}] {section.title}: {time.perf_counter() - start:.0f} s", flush=True)
        except Exception:
            failed.append(provider)
            error = traceback.format_exc()
            print(error)
            title = f"{html.escape(provider)} failed"
            blocks.append(f'<section class="error"><h2>{title}</h2><pre>{html.escape(error)}</pre></section>')
    index = output / "index.html"
    index.write_text(_PAGE.format(body="\n".join(blocks)), encoding="utf-8")
    return index, failed


# ---- the glyph world ---------------------------------------------------------------------------------------------


def glyph_world_section(output: Path, pipelines: Path) -> DemoSection:
    from .data import CHARACTERS, FONT_STYLES, HELD_OUT_FONTS, HELD_OUT_STYLES, GlyphSpec, load_glyphs, render_glyph

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


def glyph_classifier_section(output: Path, pipelines: Path) -> DemoSection:
    from PIL import ImageFilter

    from .data import load_glyphs
    from .evaluation import cfid, class_accuracy, classifier_report, load_glyph_classifier

    load_glyph_classifier()
    report = classifier_report()
    table = [["split (seed 0, never trained on)", "images", "character accuracy", "font accuracy"]]
    for split in ("test", "held_out"):
        ds = load_glyphs(split=split, num_images=500, seed=0)
        characters = class_accuracy(ds["image"], ds["label"])
        fonts = class_accuracy(ds["image"], ds["font"], head="font")
        table.append([split, "500", f"{characters:.1%}", f"{fonts:.1%}"])
    real = list(load_glyphs(split="test", num_images=500, seed=0)["image"])
    other = list(load_glyphs(split="test", num_images=500, seed=1)["image"])
    table.append(["cFID vs test seed 1 (another draw)", "500", f"{cfid(real, other):.2f}", ""])
    for sigma in (1.0, 2.0):
        blurred = [image.filter(ImageFilter.GaussianBlur(sigma)) for image in other]
        table.append([f"cFID vs seed 1, Gaussian blur {sigma}", "500", f"{cfid(real, blurred):.2f}", ""])
    recipe = report["recipe"]
    return DemoSection(
        title="The glyph classifier (the measuring instrument)",
        description=(
            f"A small CNN with a character head and a font head, trained offline in {report['train_seconds']:.0f} s "
            f"on {report['torch_threads']} CPU thread(s) ({recipe['train_images'] + recipe['held_out_images']} "
            f"renders, {recipe['epochs']} epochs) and cached. class_accuracy reads its character head; cFID is the "
            "Fréchet distance in its 64-d penultimate features (cFID, not FID: the numbers compare only with cFID)."
        ),
        table=table,
    )


# ---- the page and the command ------------------------------------------------------------------------------------


def _section_html(section: DemoSection, seconds: float) -> str:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>", f"<p>{html.escape(section.description)}</p>"]
    for path, caption in section.images:
        image = f'<img src="{html.escape(path)}" alt="{html.escape(caption)}">'
        parts.append(f"<figure>{image}<figcaption>{html.escape(caption)}</figcaption></figure>")
    if section.table:
        header, *rows = section.table
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append(f'<p class="time">built in {seconds:.1f} s</p></section>')
    return "\n".join(parts)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>diffusion-canon demo</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
section {{ border-top: 1px solid #ccc; padding: 1em 0; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
.error pre {{ background: #fee; padding: 1em; overflow: auto; }} .time {{ color: #888; font-size: small; }}
</style></head><body>
<h1>diffusion-canon</h1>
<p>The classic diffusion papers, implemented exactly, as a diffusers extension. Built by <code>make demo</code>.</p>
{body}
</body></html>
"""
