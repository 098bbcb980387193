"""Save a pipeline as a Hub-layout folder that plain diffusers can load.

``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` (diffusers ≥ 0.30) resolves a
``model_index.json`` whose ``_class_name`` is ``["pipeline", "<Class>"]`` by importing ``pipeline.py`` from the folder
(``_resolve_custom_pipeline_and_cls``), and resolves components from non-diffusers libraries through ``sys.modules``
(``_get_library_or_raise``). So the folder gets a two-line ``pipeline.py`` that imports the class from
``diffusion_canon``, which in turn imports every component's module before the components are loaded.

diffusers then checks a component class against the loader base classes *found in its library module's namespace*
(``getattr(module, "SchedulerMixin")`` …). A module that defines a scheduler without importing ``SchedulerMixin``
itself therefore cannot be named as the library; for such components the pipeline class's own module (which imports
both) is recorded instead, and an error explains the fix when neither works.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import torch

from diffusers import DiffusionPipeline
from diffusers.pipelines.pipeline_loading_utils import ALL_IMPORTABLE_CLASSES, LOADABLE_CLASSES

CUSTOM_MODULE = "pipeline"

_MODULE_TEMPLATE = '''"""Custom-pipeline shim: `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` loads {name} from
diffusion-canon (`pip install diffusion-canon`)."""

from {module} import {name}  # noqa: F401
'''


class FolderPipelineMixin:
    """Mix into a ``DiffusionPipeline`` subclass (before it) so that ``<Class>.from_pretrained(folder)`` loads a folder
    written by :func:`save_pipeline_folder` *without* ``trust_remote_code``: when ``_class_name`` is
    ``["pipeline", "<Class>"]`` naming this very class, the class is used directly instead of the folder's module
    (which would only import it). Any other custom pipeline still needs ``trust_remote_code``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs):
        """``DiffusionPipeline.from_pretrained`` with clear errors where diffusers gives none: a local folder that does
        not exist (not "Repo id must be in the form ..."), a component keyword this pipeline does not have (not
        silently ignored), and a folder whose weights are incomplete (not "Tensor on device meta" at the first
        call)."""
        path = str(pretrained_model_name_or_path)
        looks_local = path.startswith((".", "/", "~")) or Path(path).exists() or path.count("/") > 1
        if looks_local and not Path(path).expanduser().is_dir():
            raise ValueError(f"pretrained_model_name_or_path {path!r} is not an existing folder (nor a Hub id "
                             "of the form 'owner/name')")
        # a keyword that passes a component (a model, scheduler or tokenizer, or None to drop one) must name one of
        # this pipeline's; loading options (revision=..., dtype=...) are left to diffusers
        expected = set(cls._get_signature_keys(cls)[0]) | set(cls._get_signature_keys(cls)[1])
        unknown = sorted(k for k, value in kwargs.items()
                         if k not in expected and (value is None or hasattr(value, "save_pretrained")))
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained got components {unknown}; its components are "
                            f"{sorted(expected)}")
        pipeline = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        for name, component in pipeline.components.items():
            if isinstance(component, torch.nn.Module):
                missing = [key for key, tensor in component.state_dict().items() if tensor.is_meta]
                if missing:
                    raise ValueError(f"{path}: component {name!r} lacks weights for {missing[:5]}"
                                     f"{' …' if len(missing) > 5 else ''} (an incomplete or damaged weights file)")
        return pipeline

    @classmethod
    def load_config(cls, *args, **kwargs):
        result = super().load_config(*args, **kwargs)
        config = result[0] if isinstance(result, tuple) else result
        name = config.get("_class_name")
        if isinstance(name, list) and len(name) == 2 and name[0] == CUSTOM_MODULE and name[1] == cls.__name__:
            config["_class_name"] = cls.__name__
        return result


def _exposes_loader(module: ModuleType | None, cls: type) -> bool:
    """Whether diffusers can load ``cls`` from ``module``: it holds ``cls`` by name and one of its loader bases."""
    if module is None or getattr(module, cls.__name__, None) is not cls:
        return False
    bases = (getattr(module, name, None) for name in ALL_IMPORTABLE_CLASSES)
    return any(isinstance(base, type) and issubclass(cls, base) for base in bases)


def _component_library(component: object, pipeline_cls: type) -> str:
    """The module to record as a component's library in ``model_index.json`` (see the module docstring)."""
    cls = type(component)
    for name in (cls.__module__, pipeline_cls.__module__):
        if _exposes_loader(sys.modules.get(name), cls):
            return name
    raise ValueError(
        f"diffusers cannot load {cls.__name__}: neither {cls.__module__} nor {pipeline_cls.__module__} exposes it "
        f"together with its diffusers base class (e.g. `from diffusers import SchedulerMixin` in {cls.__module__})"
    )


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
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        if entry[0].split(".")[0] not in LOADABLE_CLASSES:
            entry[0] = _component_library(getattr(pipeline, name), cls)
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if model_card is not None:
        (folder / "README.md").write_text(model_card)
    return folder


def load_pipeline_folder(pipeline_cls: type[DiffusionPipeline], path: str | Path) -> DiffusionPipeline:
    """A shipped pipeline folder (``pipelines/<name>``) in float32 with the progress bar off, for demos, benchmarks and
    tests; a missing folder is a clear error pointing at its RECIPE.md rather than a Hub lookup."""
    if not (Path(path) / "model_index.json").is_file():
        raise ValueError(f"no {pipeline_cls.__name__} folder at {str(path)!r} (expected model_index.json); "
                         "see its RECIPE.md")
    pipe = pipeline_cls.from_pretrained(path, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def cast_for_storage(pipeline: DiffusionPipeline, dtype: torch.dtype) -> DiffusionPipeline:
    """Cast the pipeline's diffusers models to ``dtype`` for saving, keeping its transformers models in float32.

    A plain ``from_pretrained`` upcasts diffusers models stored in half precision to float32, while transformers
    (5.x) loads a model in the dtype it was stored in: a folder stored all in fp16 then loads mixed, and the first
    call fails ("mat1 and mat2 must have the same dtype"). Stored this way it loads in one dtype, float32. Returns
    ``pipeline``, cast in place."""
    from diffusers import ModelMixin

    for component in pipeline.components.values():
        if isinstance(component, ModelMixin):
            component.to(dtype=dtype)
        elif isinstance(component, torch.nn.Module):
            component.to(dtype=torch.float32)
    return pipeline
