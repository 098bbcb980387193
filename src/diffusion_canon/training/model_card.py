"""Model cards: ``README.md`` in the output folder, filled from a Jinja template shipped as package data in
``diffusion_canon/model_cards/`` (found with :mod:`importlib.resources`, so an installed wheel has them too)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from typing import Any

from huggingface_hub import ModelCard, ModelCardData
from PIL import Image

TEMPLATES = resources.files("diffusion_canon") / "model_cards"


def template_text(name: str) -> str:
    """The text of the packaged template ``model_cards/<name>.md``."""
    template = TEMPLATES / f"{name}.md"
    if not template.is_file():
        available = sorted(p.name.removesuffix(".md") for p in TEMPLATES.iterdir() if p.name.endswith(".md"))
        raise ValueError(f"model card template {name!r} does not exist; available: {available}")
    return template.read_text(encoding="utf-8")


def write_model_card(
    output_dir: str,
    template: str,
    *,
    base_model: str | None,
    tags: Sequence[str],
    images: Sequence[Image.Image] = (),
    repo_id: str | None = None,
    folder: str | None = None,
    **fields: Any,
) -> ModelCard:
    """Save ``images`` as ``image_<i>.png`` and write ``output_dir/README.md`` from ``model_cards/<template>.md``.

    The template sees ``base_model``, ``images`` (the saved file names), ``repo_or_folder`` (``repo_id`` when the run
    is pushed to the Hub, else ``folder``, by default ``output_dir``; the load snippet uses it) and every keyword in
    ``fields``. ``folder`` is where the card will be read: the final ``--output_dir`` when ``output_dir`` is the staging
    folder of ``TrainingRun.final_output``.
    """
    image_files = []
    for i, image in enumerate(images):
        image.save(os.path.join(output_dir, f"image_{i}.png"))
        image_files.append(f"image_{i}.png")
    card_data = ModelCardData(
        license="apache-2.0",
        library_name="diffusers",
        base_model=base_model if base_model and not os.path.isdir(base_model) else None,
        tags=["diffusion-canon", *tags],
    )
    card = ModelCard.from_template(
        card_data, template_str=template_text(template), base_model=base_model, images=image_files,
        repo_or_folder=repo_id or folder or output_dir, **fields
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card
