"""The glyph classifier in the demo gallery: the measuring instrument of every other section, with its accuracy on
splits it never trained on and the cFID of real draws, plain and blurred (what cFID numbers mean)."""

from __future__ import annotations

from pathlib import Path

from .section import DemoSection


def glyph_classifier_section(output: Path, pipelines: Path) -> DemoSection:
    """Demo section: accuracy and cFID table of the cached glyph classifier, measured now."""
    from PIL import ImageFilter

    from ..data import load_glyphs
    from ..evaluation import cfid, class_accuracy, classifier_report, load_glyph_classifier

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
