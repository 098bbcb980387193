"""Save a pipeline as a Hub-layout folder that plain diffusers can load.

``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` (diffusers ≥ 0.30) resolves a
``model_index.json`` whose ``_class_name`` is ``["pipeline", "<Class>"]`` by importing ``pipeline.py`` from the folder
(``_resolve_custom_pipeline_and_cls``), and resolves components from non-diffusers libraries through ``sys.modules``
(``_get_library_or_raise``). So the folder gets a two-line ``pipeline.py`` that imports the class from
``diffusion_canon``, which in turn imports every component's module before the components are loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffusers import DiffusionPipeline

CUSTOM_MODULE = "pipeline"

_MODULE_TEMPLATE = '''"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads {name} from
diffusion-canon (`pip install diffusion-canon`)."""

from {module} import {name}  # noqa: F401
'''


def save_pipeline_folder(
    pipeline: DiffusionPipeline,
    folder: str | Path,
    model_card: str | None = None,
    safe_serialization: bool = True,
    **save_kwargs,
) -> Path:
    """``pipeline.save_pretrained(folder)`` plus the custom-pipeline module, so both
    ``<Class>.from_pretrained(folder)`` and ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` work
    offline.

    Args:
        pipeline: any ``DiffusionPipeline`` subclass defined in an importable module (e.g. ``diffusion_canon``).
        folder: output directory (created).
        model_card: markdown written to ``README.md`` (e.g. a filled ``model_cards/`` template); ``None`` writes none.
        safe_serialization, save_kwargs: passed to ``save_pretrained`` (weights as safetensors by default).
    Returns:
        the folder's path.
    """
    folder = Path(folder)
    cls = type(pipeline)
    if cls.__module__ in ("__main__", "builtins"):
        raise ValueError(f"{cls.__name__} must live in an importable module to be loadable, not {cls.__module__!r}")
    pipeline.save_pretrained(folder, safe_serialization=safe_serialization, **save_kwargs)
    (folder / f"{CUSTOM_MODULE}.py").write_text(_MODULE_TEMPLATE.format(module=cls.__module__, name=cls.__name__))
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = [CUSTOM_MODULE, cls.__name__]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if model_card is not None:
        (folder / "README.md").write_text(model_card)
    return folder
