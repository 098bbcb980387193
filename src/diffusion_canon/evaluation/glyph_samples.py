"""Measuring a class-conditional glyph sampler (the ADM defaults; the benchmarks and the demo gallery share these):
samples per class, class accuracy, cFID and within-class diversity against real renders — Dhariwal & Nichol 2021, §4:
larger classifier scales trade diversity for fidelity."""

from __future__ import annotations

from collections.abc import Sequence

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from ..pipelines.pipeline_adm import ADMPipeline

DEFAULT_PIPELINE_NAME = "adm-glyphs-32"  # the shipped default these measurements were written for (pipelines/)
# the data the default was trained on (its RECIPE.md); real images for cFID come from the same selection
DEFAULT_SELECTION = {"characters": "0123456789", "colors": "black", "backgrounds": "white"}


def sample_per_class(
    pipe: ADMPipeline,
    per_class: int,
    classifier_scale: float = 0.0,
    num_inference_steps: int = 25,
    seed: int = 0,
    batch_size: int = 50,
) -> tuple[np.ndarray, list[int]]:
    """``per_class`` samples of every class, class-major: images ``(K·per_class, H, W, 3)`` float in [0, 1] and their
    labels. Batch ``b`` uses the generator seeded ``seed + b``, so every scale sees the same initial noise."""
    return sample_classes(pipe, per_class, seed, batch_size, num_inference_steps=num_inference_steps,
                          classifier_scale=classifier_scale)


def sample_classes(pipe, per_class: int, seed: int = 0, batch_size: int = 50,
                   **call_kwargs) -> tuple[np.ndarray, list[int]]:
    """:func:`sample_per_class` for any class-conditional pipeline (ADM, EDM, a distilled student): ``call_kwargs``
    go to every call, e.g. ``num_inference_steps=2``."""
    labels = [k for k in range(pipe.num_classes) for _ in range(per_class)]
    images = []
    for b, start in enumerate(range(0, len(labels), batch_size)):
        images.append(pipe(labels[start : start + batch_size], output_type="np",
                           generator=torch.Generator().manual_seed(seed + b), **call_kwargs).images)
    return np.concatenate(images), labels


def reference_images(count: int, selection: dict | None = None, seed: int = 0) -> np.ndarray:
    """``count`` real glyphs (split "test", never trained on) of the default's selection, ``(N, 32, 32, 3)`` in
    [0, 1]."""
    from ..data.glyphs import glyph_specs, render_glyph

    specs = glyph_specs(num_images=count, seed=seed, split="test", **(selection or DEFAULT_SELECTION))
    return np.stack([render_glyph(spec, 32)[32] for spec in specs]).astype(np.float32) / 255


def within_class_diversity(images: np.ndarray, labels: Sequence[int]) -> float:
    """Mean pairwise distance between glyph-classifier features of images of the same class, averaged over classes
    (NaN when no class has two images)."""
    from . import glyph_features

    features, labels = glyph_features(images), np.asarray(labels)
    spreads = []
    for k in np.unique(labels):
        f = features[labels == k]
        if len(f) > 1:
            distances = np.linalg.norm(f[:, None] - f[None], axis=-1)
            spreads.append(distances.sum() / (len(f) * (len(f) - 1)))
    return float(np.mean(spreads)) if spreads else float("nan")


def ink_on_paper(images: np.ndarray) -> np.ndarray:
    """Grey levels stretched to [0, 1] per image, ``(N, H, W, 3)``: maps a sample with a tinted background onto the
    black-on-white colours of the default's training data without touching the shape of the glyph."""
    grey = images.mean(axis=-1, keepdims=True)
    low, high = grey.min(axis=(1, 2, 3), keepdims=True), grey.max(axis=(1, 2, 3), keepdims=True)
    return np.repeat((grey - low) / np.maximum(high - low, 1e-6), 3, axis=-1)


def sample_quality(images: np.ndarray, labels: Sequence[int], class_names: Sequence[str],
                   real: np.ndarray, real_labels: Sequence[int]) -> dict[str, float]:
    """Class accuracy (glyph classifier), cFID against ``real`` and within-class diversity relative to ``real``'s, all
    on :func:`ink_on_paper` images (the default's samples have tinted backgrounds that the glyph classifier, trained
    on a few paper colours, misreads; see the model card), plus the class accuracy of the raw samples."""
    from . import cfid, class_accuracy

    names = [class_names[k] for k in labels]
    normalised = ink_on_paper(images)
    return {
        "accuracy": class_accuracy(normalised, names),
        "accuracy_raw": class_accuracy(images, names),
        "cfid": cfid(normalised, real),
        "diversity": within_class_diversity(normalised, labels) / within_class_diversity(real, real_labels),
    }


def real_labels(count: int, selection: dict | None = None) -> list[int]:
    """Class indices (within the selection) of :func:`reference_images`: characters cycle through the selection."""
    characters = (selection or DEFAULT_SELECTION)["characters"]
    return [i % len(characters) for i in range(count)]
