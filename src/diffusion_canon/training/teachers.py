"""The teacher of a distillation (consistency distillation, progressive distillation): a pipeline folder's U-Net and
its denoiser on the Karras σ scale."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..models import ADMUNet2DModel
from ..pipelines import ADMPipeline, EDMPipeline
from ..pipelines.hub import load_pipeline_folder
from ..schedulers import KarrasDiffusionScheduler
from ..schedulers.scheduling_karras import vp_config


def load_teacher(path: str, class_names: Sequence[str]) -> tuple[ADMUNet2DModel, KarrasDiffusionScheduler]:
    """The teacher's U-Net and its denoiser: an EDM folder's own scheduler, or a VP (ADM) folder's as a Karras
    denoiser on σ = √((1 − ᾱ)/ᾱ). ``ValueError`` naming ``--teacher_model_path`` for anything else, or for a
    class-conditional teacher with another number of classes than the data's ``class_names``."""
    index = Path(path) / "model_index.json"
    kind = json.loads(index.read_text()).get("_class_name") if index.is_file() else None
    kind = kind[-1] if isinstance(kind, list) else kind
    if kind == "EDMPipeline":
        pipe = load_pipeline_folder(EDMPipeline, path)
        denoiser = KarrasDiffusionScheduler.from_config(pipe.scheduler.config)
    elif kind == "ADMPipeline":
        pipe = load_pipeline_folder(ADMPipeline, path)
        denoiser = KarrasDiffusionScheduler(**vp_config(pipe.scheduler))
    else:
        raise ValueError(f"--teacher_model_path {path!r} must be an ADMPipeline or EDMPipeline folder, found {kind!r}")
    if pipe.unet.config.num_classes not in (None, len(class_names)):
        raise ValueError(f"--teacher_model_path {path!r} has {pipe.unet.config.num_classes} classes, the data "
                         f"{len(class_names)} ({''.join(class_names)}): pick the data the teacher was trained on")
    return pipe.unet, denoiser
