"""A small glyph classifier (character head + font head, optionally a style head), trained offline on the glyph world.

It is the project's measuring instrument: :func:`class_accuracy` reads its character head, :func:`predict_glyphs`
both heads, and cFID (:mod:`.frechet`) its penultimate features. It is trained on renders from the glyph world's
"train" and "held_out" splits under a seed of its own (so the held-out font is recognised too) and is scored on the
"test" and "held_out" splits at seed 0, draws it never saw. The weights are cached (safetensors, ``save_pretrained``
layout) under ``$DIFFUSION_CANON_CACHE`` (default ``~/.cache/diffusion_canon``) and retrained when absent, which
takes one to two minutes on one CPU core.

The style head (``regular`` ... ``outline``) lives in a second cached classifier,
``load_glyph_classifier(styles=True)``, trained by the same recipe with a third loss, so that the figures measured
with the two-head classifier stay reproducible; ``class_accuracy(..., head="style")`` loads it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..data.glyphs import CHARACTERS, FONTS, HELD_OUT_FONTS, STYLES, glyph_specs, render_glyph
from .images import ImageBatch, images_to_tensor

__all__ = [
    "GlyphClassifier",
    "class_accuracy",
    "classifier_report",
    "glyph_cache_dir",
    "load_glyph_classifier",
    "predict_glyphs",
    "train_glyph_classifier",
]

logger = logging.getLogger(__name__)

# Bump when the architecture or the recipe changes: a cached classifier from another recipe is never reused.
_RECIPE_VERSION = 2
_STYLES_RECIPE_VERSION = 1  # the classifier with a style head: the same recipe and seed, plus the style loss
HEADS = ("character", "font", "style")
_RECIPE = {"seed": 1234, "train_images": 7000, "held_out_images": 3000, "epochs": 6, "batch_size": 128, "lr": 3e-3}


class GlyphClassifier(ModelMixin, ConfigMixin):
    """Tiny CNN: a stride-2 stem, three conv stages (the last two halve the resolution again), global average
    pooling, a feature layer and two linear heads, three when ``styles`` names the glyph styles.

    Input ``(N, 3, resolution, resolution)`` in [0, 1]; ``forward`` returns character logits ``(N, C)``, font logits
    ``(N, F)`` and the penultimate features ``(N, feature_dim)`` used by cFID; ``style_head(features)`` gives the
    style logits ``(N, S)``.
    """

    @register_to_config
    def __init__(
        self,
        characters: tuple[str, ...] = CHARACTERS,
        fonts: tuple[str, ...] = FONTS,
        resolution: int = 32,
        channels: tuple[int, ...] = (32, 64, 96),
        feature_dim: int = 64,
        styles: tuple[str, ...] = (),
    ):
        super().__init__()
        # the stem already halves the resolution: 32x32 glyphs are legible at 16x16 features, at half the compute
        stem = nn.Conv2d(3, channels[0], 3, stride=2, padding=1)
        layers: list[nn.Module] = [stem, nn.BatchNorm2d(channels[0]), nn.ReLU()]
        width = channels[0]
        for i, out in enumerate(channels):
            if i:
                layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            layers += [nn.Conv2d(out, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            width = out
        self.encoder = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.features = nn.Sequential(nn.Linear(width, feature_dim), nn.ReLU())
        self.character_head = nn.Linear(feature_dim, len(characters))
        self.font_head = nn.Linear(feature_dim, len(fonts))
        self.style_head = nn.Linear(feature_dim, len(styles)) if styles else None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.features(self.encoder(images * 2 - 1))
        return self.character_head(features), self.font_head(features), features

    @torch.no_grad()
    def run(self, images: ImageBatch, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``forward`` in eval mode over any image batch format (see :func:`.images.images_to_tensor`)."""
        batch = images_to_tensor(images, self.config.resolution)
        self.eval()
        chunks = batch.to(self.device, self.dtype).split(batch_size)
        outputs = [self(chunk) for chunk in chunks]
        return tuple(torch.cat([output[k] for output in outputs]).float().cpu() for k in range(3))  # type: ignore

    @torch.no_grad()
    def head_logits(self, images: ImageBatch) -> dict[str, torch.Tensor]:
        """The logits of every head this classifier has, by head name (``"character"``, ``"font"``, ``"style"``)."""
        character_logits, font_logits, features = self.run(images)
        logits = {"character": character_logits, "font": font_logits}
        if self.style_head is not None:
            logits["style"] = self.style_head(features.to(self.device, self.dtype)).float().cpu()
        return logits

    def head_names(self, head: str) -> tuple[str, ...]:
        """The class names of ``head``, in logit order."""
        return tuple({"character": self.config.characters, "font": self.config.fonts,
                      "style": self.config.styles}[head])


def glyph_cache_dir() -> Path:
    """Where offline-trained measuring models live: ``$DIFFUSION_CANON_CACHE`` or ``~/.cache/diffusion_canon``."""
    return Path(os.environ.get("DIFFUSION_CANON_CACHE", Path.home() / ".cache" / "diffusion_canon"))


@functools.cache
def load_glyph_classifier(cache_dir: str | os.PathLike | None = None, styles: bool = False) -> GlyphClassifier:
    """The cached glyph classifier (with a style head if ``styles``), trained (and cached) first if absent. Loaded
    once per process.

    Concurrent processes (e.g. parallel test runs) wait on a file lock instead of training twice.
    """
    from filelock import FileLock

    folder = _classifier_folder(cache_dir, styles)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if not (folder / "config.json").exists():
            logger.warning("training the glyph classifier (once, a minute or two on a CPU) into %s", folder)
            model, report = train_glyph_classifier(styles=True) if styles else train_glyph_classifier()
            staging = folder.with_name(folder.name + f".tmp-{os.getpid()}")
            model.save_pretrained(staging)
            (staging / "training.json").write_text(json.dumps(report, indent=2) + "\n")
            os.replace(staging, folder)  # atomic: readers never see a half-written folder
    return GlyphClassifier.from_pretrained(folder).eval()


def classifier_report(cache_dir: str | os.PathLike | None = None, styles: bool = False) -> dict:
    """Training time and held-out accuracies recorded when the cached classifier was trained."""
    load_glyph_classifier(cache_dir, styles)
    return json.loads((_classifier_folder(cache_dir, styles) / "training.json").read_text())


def _classifier_folder(cache_dir: str | os.PathLike | None, styles: bool = False) -> Path:
    name = f"glyph-classifier-styles-v{_STYLES_RECIPE_VERSION}" if styles else f"glyph-classifier-v{_RECIPE_VERSION}"
    return Path(cache_dir or glyph_cache_dir()) / name


def train_glyph_classifier(
    seed: int = _RECIPE["seed"],
    train_images: int = _RECIPE["train_images"],
    held_out_images: int = _RECIPE["held_out_images"],
    epochs: int = _RECIPE["epochs"],
    batch_size: int = _RECIPE["batch_size"],
    lr: float = _RECIPE["lr"],
    evaluation_images: int = 1000,
    styles: bool = False,
) -> tuple[GlyphClassifier, dict]:
    """Train a classifier from scratch on fresh renders; deterministic given ``seed`` (and the thread count).

    ``held_out_images`` are split evenly between the whole "held_out" split (mostly the outline style) and the
    held-out fonts alone, so that the held-out font is seen in every style it has.

    ``styles`` adds the style head and its loss; the other heads see the same renders in the same order.

    Returns the model (eval mode) and a report: recipe, seconds spent, character/font (and style) accuracy on
    ``evaluation_images`` renders of the "test" and "held_out" splits at seed 0 (never seen in training).
    """
    if seed == 0:
        raise ValueError("seed must not be 0: seed 0 draws the renders the classifier is scored on")
    start = time.perf_counter()
    parts = [
        _render("train", seed, train_images),
        _render("held_out", seed, held_out_images // 2),
        _render("held_out", seed + 1, held_out_images - held_out_images // 2, fonts=HELD_OUT_FONTS),
    ]
    images, characters, fonts, glyph_styles = (torch.cat(column) for column in zip(*parts))
    render_seconds = time.perf_counter() - start

    torch.manual_seed(seed)
    model = GlyphClassifier(styles=STYLES if styles else ())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = len(images) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    shuffle = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=shuffle)
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            character_logits, font_logits, features = model(images[index])
            loss = F.cross_entropy(character_logits, characters[index]) + F.cross_entropy(font_logits, fonts[index])
            if styles:
                loss = loss + F.cross_entropy(model.style_head(features), glyph_styles[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    report = {
        "recipe": {
            "version": _STYLES_RECIPE_VERSION if styles else _RECIPE_VERSION,
            "seed": seed,
            "train_images": train_images,
            "held_out_images": held_out_images,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "styles": styles,
        },
        "torch_threads": torch.get_num_threads(),
        "render_seconds": round(render_seconds, 2),
        "train_seconds": round(time.perf_counter() - start, 2),
    }
    for split in ("test", "held_out"):
        eval_images, eval_characters, eval_fonts, eval_styles = _render(split, 0, evaluation_images)
        character_logits, font_logits, features = model.run(eval_images)
        report[f"{split}_character_accuracy"] = float((character_logits.argmax(1) == eval_characters).float().mean())
        report[f"{split}_font_accuracy"] = float((font_logits.argmax(1) == eval_fonts).float().mean())
        if styles:
            style_logits = model.style_head(features)
            report[f"{split}_style_accuracy"] = float((style_logits.argmax(1) == eval_styles).float().mean())
    report["evaluation"] = {"seed": 0, "num_images": evaluation_images}
    return model, report


def predict_glyphs(images: ImageBatch, classifier: GlyphClassifier | None = None) -> dict:
    """Read characters and fonts (and styles, when ``classifier`` has a style head) off images.

    Returns:
        ``{"character": list[str], "font": list[str], "label": LongTensor (N,) index into CHARACTERS,
        "character_probability": (N,), "font_probability": (N,)}`` (probabilities of the predicted classes), plus
        ``"style"`` and ``"style_probability"`` from a style head.
    """
    classifier = classifier or load_glyph_classifier()
    prediction = {}
    for head, logits in classifier.head_logits(images).items():
        probability, index = logits.softmax(1).max(1)
        names = classifier.head_names(head)
        prediction[head] = [names[i] for i in index.tolist()]
        prediction[f"{head}_probability"] = probability
        if head == "character":
            prediction["label"] = index
    return prediction


def class_accuracy(
    images: ImageBatch, labels, head: str = "character", classifier: GlyphClassifier | None = None
) -> float:
    """Fraction of images the classifier reads as their intended class.

    Args:
        images: a batch (list of PIL, np ``(N, H, W, C)`` or torch ``(N, C, H, W)``, values in [0, 1]).
        labels: ``N`` class indices (ints, tensor or array) or names: characters for ``head="character"``
            (indices into :data:`CHARACTERS`, the ``label`` column of :func:`load_glyphs`), font names for
            ``head="font"``, style names for ``head="style"``.
        head: ``"character"``, ``"font"`` or ``"style"`` (by default read by ``load_glyph_classifier(styles=True)``).
        classifier: the classifier to read; it needs a style head for ``head="style"``.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {list(HEADS)}, got {head!r}")
    classifier = classifier or load_glyph_classifier(styles=head == "style")
    if head == "style" and classifier.style_head is None:
        raise ValueError("head='style' needs a classifier with a style head: load_glyph_classifier(styles=True)")
    target = _label_indices(labels, classifier.head_names(head), head)
    logits = classifier.head_logits(images)[head]
    if len(logits) != len(target):
        raise ValueError(f"labels has {len(target)} entries but images has {len(logits)}")
    return float((logits.argmax(1) == target).float().mean())


def _label_indices(labels, names: tuple[str, ...], head: str) -> torch.Tensor:
    values = labels.tolist() if isinstance(labels, (torch.Tensor, np.ndarray)) else list(labels)
    indices = []
    for value in values:
        if isinstance(value, str):
            if value not in names:
                raise ValueError(f"unknown {head} label {value!r} in labels; allowed: {list(names)}")
            indices.append(names.index(value))
        elif isinstance(value, (int, np.integer)) and 0 <= value < len(names):
            indices.append(int(value))
        else:
            raise ValueError(f"labels must be {head} names or indices in [0, {len(names)}), got {value!r}")
    return torch.tensor(indices, dtype=torch.long)


def _render(split: str, seed: int, num_images: int, **selection) -> tuple[torch.Tensor, ...]:
    """Renders as tensors, skipping the PNG round trip of a ``datasets.Dataset``: images (N, 3, 32, 32) in [0, 1],
    and the indices of their characters, fonts and styles."""
    specs = glyph_specs(num_images=num_images, seed=seed, split=split, **selection)
    pixels = np.stack([render_glyph(spec, 32)[32] for spec in specs])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    characters = torch.tensor([spec.label for spec in specs])
    fonts = torch.tensor([FONTS.index(spec.font) for spec in specs])
    styles = torch.tensor([STYLES.index(spec.style) for spec in specs])
    return images, characters, fonts, styles
