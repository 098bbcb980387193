"""diffusion-canon: the classic diffusion papers, implemented exactly, as a diffusers extension.

The public API is imported lazily so that `import diffusion_canon` (and the CLI) start fast; every name listed in
``_EXPORTS`` is importable from the top level, e.g. ``from diffusion_canon import load_glyphs``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (relative to this package)
_EXPORTS: dict[str, str] = {
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diffusion_canon' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
