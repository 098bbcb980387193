"""`diffusion-canon demo`: a static gallery (index.html + PNGs) of what the project does.

The gallery is a list of sections. Each entry of :data:`SECTIONS` names a provider, ``"module:function"``; the
function takes the output folder and the folder of shipped pipelines (``pipelines/`` of the checkout, unless told
otherwise), writes its PNGs there and returns a :class:`DemoSection`. A pipeline adds itself
to the gallery by appending one entry. A provider that fails becomes an error box in the page and a non-zero exit
status, never a silently missing section.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .page import error_html, note_html, page_html, section_html

__all__ = ["SECTIONS", "TRAINING_SECTIONS", "run_demo"]

# Sections that only sample the shipped folders: `make demo` (minutes).
SECTIONS: list[str] = [
    "diffusion_canon.demo.glyph_world:glyph_world_section",
    "diffusion_canon.demo.glyph_classifier:glyph_classifier_section",
    "diffusion_canon.demo.adm:adm_glyphs_section",
    "diffusion_canon.demo.few_step:few_step_section",
    "diffusion_canon.demo.cascade:cascade_section",
    "diffusion_canon.demo.unclip:unclip_section",
    "diffusion_canon.demo.tiny_sd:tiny_sd_section",
]
# Sections that train models in-process: `make demo-train` (``--train``) adds them.
TRAINING_SECTIONS: list[str] = [
    "diffusion_canon.demo.fine_tuning:fine_tuning_section",
]


def run_demo(output: str | Path = "outputs/demo", sections: Sequence[str] | None = None,
             pipelines: str | Path | None = None, train: bool = False) -> tuple[Path, list[str]]:
    """Build the gallery from the pipeline folders in ``pipelines`` (default: the checkout's ``pipelines/``);
    returns the path of index.html and the providers that failed. Prints each section as it starts and ends.

    ``sections``: the providers to run (default :data:`SECTIONS`, plus :data:`TRAINING_SECTIONS` when ``train``).
    Left-out training sections are named on the page with the command that builds them."""
    from ..checkout import pipelines_folder

    pipelines = pipelines_folder(pipelines)  # no checkout and no folder given: a clear error before any work
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    providers = list(sections) if sections is not None else SECTIONS + (TRAINING_SECTIONS if train else [])
    blocks, failed = [], []
    for number, provider in enumerate(providers, 1):
        print(f"[{number}/{len(providers)}] {provider} ...", flush=True)
        start = time.perf_counter()
        try:
            module, function = provider.split(":")
            section = getattr(importlib.import_module(module), function)(output, pipelines)
            blocks.append(section_html(section, time.perf_counter() - start))
            print(f"[{number}/{len(providers)}] {section.title}: {time.perf_counter() - start:.0f} s", flush=True)
        except Exception:
            failed.append(provider)
            error = traceback.format_exc()
            print(error)
            blocks.append(error_html(provider, error))
    if sections is None and not train:
        blocks.append(note_html("Not built by this run: " + ", ".join(TRAINING_SECTIONS), "These sections train models "
                                "in-process (5.4 min on a 2-core CPU): run `make demo-train` "
                                "(`diffusion-canon demo --train`) to add them."))
    index = output / "index.html"
    index.write_text(page_html(blocks), encoding="utf-8")
    return index, failed
