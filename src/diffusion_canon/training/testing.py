"""Helpers for testing training scripts in-process: import ``training/<name>.py`` as a module and reset accelerate's
process-wide state between runs. Use in a test module::

    from diffusion_canon.training.testing import fresh_accelerate_state, load_script  # noqa: F401 (fixture)

    train_x = load_script("train_x")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from accelerate.state import AcceleratorState, GradientState

SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "training"


def load_script(name: str) -> ModuleType:
    """Import ``training/<name>.py`` of this checkout (scripts are not part of the installed package)."""
    path = SCRIPTS_DIR / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"no training script {name!r}: {path} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reset_accelerate_state() -> None:
    """Forget the process-wide accelerate state, so the next ``Accelerator`` may use other settings."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Autouse fixture: each test's in-process runs start from a fresh accelerate state."""
    yield
    reset_accelerate_state()
