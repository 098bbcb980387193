"""Every shipped pipeline folder's model card: its Python snippet runs as written, from the checkout's root, in stock
diffusers at the default dtype (a folder stored with fp16 text encoders once loaded mixed: Half vs Float)."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from script_helpers import CHECKOUT, PIPELINES

FOLDERS = sorted(p.name for p in PIPELINES.iterdir() if (p / "model_index.json").is_file())
SNIPPET = re.compile(r"```python\n(.*?)```", re.S)


def test_every_shipped_folder_is_covered():
    assert FOLDERS == ["adm-glyphs-32", "adm-glyphs-32-consistency", "adm-glyphs-32-distilled-1step",
                       "adm-glyphs-32-distilled-2step", "glyph-cascade-16-64", "tiny-sd-glyphs", "unclip-glyphs"]


@pytest.mark.parametrize("name", FOLDERS)
def test_card_snippet_runs_and_generates(name, monkeypatch):
    card = (PIPELINES / name / "README.md").read_text()
    snippets = SNIPPET.findall(card)
    assert len(snippets) == 1, f"{name}: expected one python snippet, found {len(snippets)}"
    monkeypatch.chdir(CHECKOUT)  # the snippets name the folder as pipelines/<name>
    namespace: dict = {}
    exec(compile(snippets[0], f"pipelines/{name}/README.md", "exec"), namespace)
    pipe = namespace["pipe"]
    dtypes = {module.dtype for module in pipe.components.values() if isinstance(module, torch.nn.Module)}
    assert dtypes == {torch.float32}, f"{name}: a plain load gives {dtypes}"
    outputs = [namespace[k] for k in ("images", "image", "out", "variations") if k in namespace]
    assert outputs, f"{name}: the snippet keeps no output"
    for output in outputs:
        images = getattr(output, "images", output)
        images = images if isinstance(images, list) else [images]
        for image in images:
            assert isinstance(image, Image.Image)
            pixels = np.asarray(image, dtype=np.float64)
            assert np.isfinite(pixels).all() and pixels.std() > 1.0, f"{name}: a blank image"
