"""Checkpoint converters: openai/guided-diffusion and openai/improved-diffusion → diffusers pipeline folders.

The converter itself (torch, diffusers) is imported on first use, so that the flag and preset tables
(``adm_flags``, ``adm_presets``) load without it: ``diffusion-canon convert --help`` needs only those."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "convert_adm_checkpoint": ".adm", "convert_classifier": ".adm", "convert_unet": ".adm", "load_checkpoint": ".adm",
    "PRESETS": ".adm_presets", "Preset": ".adm_presets", "get_preset": ".adm_presets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
