"""Helpers for testing training scripts in-process: import ``training/<name>.py`` as a module and reset accelerate's
process-wide state between runs. Use in a test module::

    from script_helpers import fresh_accelerate_state, load_script  # noqa: F401 (fixture)

    train_x = load_script("train_x")
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from diffusion_canon.checkout import training_script
from diffusion_canon.training.run import reset_accelerate_state

CHECKOUT = Path(__file__).resolve().parents[1]
PIPELINES = CHECKOUT / "pipelines"  # the shipped defaults


def load_script(name: str) -> ModuleType:
    """Import ``training/<name>.py`` of this checkout (scripts are not part of the installed package)."""
    return training_script(name, CHECKOUT)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Autouse fixture: each test's in-process runs start from a fresh accelerate state."""
    yield
    reset_accelerate_state()
