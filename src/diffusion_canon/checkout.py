"""The source checkout's own folders, which the demo uses and a wheel does not contain: the shipped pipelines
(``pipelines/``) and the training scripts (``training/``).

The library finds them only from the current folder (the checkout or a folder inside it) or where it is told;
nothing in the package points at a path relative to its own files, so an installed wheel behaves the same wherever
it is, and says so clearly when there is no checkout to use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

PROJECT_MARKER = 'name = "diffusion-canon"'


def find_checkout(start: str | Path | None = None) -> Path | None:
    """The diffusion-canon checkout containing ``start`` (default: the current folder), or ``None``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and PROJECT_MARKER in pyproject.read_text(encoding="utf-8", errors="replace"):
            return folder
    return None


def pipelines_folder(folder: str | Path | None = None) -> Path:
    """``folder`` if given (it must exist), else the ``pipelines/`` of the checkout the current folder is in."""
    if folder is not None:
        if not Path(folder).is_dir():
            raise ValueError(f"pipelines folder {str(folder)!r} does not exist")
        return Path(folder)
    checkout = find_checkout()
    if checkout is None or not (checkout / "pipelines").is_dir():
        raise ValueError(
            f"no pipelines folder given, and the current folder ({Path.cwd()}) is not inside a diffusion-canon "
            "checkout with a pipelines/ folder: run from the checkout, or pass the folder of pipeline folders "
            "(diffusion-canon demo --pipelines DIR)"
        )
    return checkout / "pipelines"


def training_script(name: str, checkout: str | Path | None = None) -> ModuleType:
    """Import ``training/<name>.py`` of ``checkout`` (default: the one the current folder is in) as a module."""
    root = Path(checkout) if checkout is not None else find_checkout()
    if root is None:
        raise ValueError(f"training script {name!r} needs a diffusion-canon checkout (its training/ folder); "
                         f"the current folder ({Path.cwd()}) is not inside one")
    path = root / "training" / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no training script {name!r}: {path} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
