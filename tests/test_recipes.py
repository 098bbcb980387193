"""`make models` runs pipelines/*/recipe.sh: every shipped default has one, it is valid bash, and every command in it
names a script, subcommand and flags that exist (checked against each command's own --help, in-process)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(ROOT.glob("pipelines/*/recipe.sh"))


def commands(recipe: Path) -> list[list[str]]:
    """The ``$PY ...`` commands of a recipe, continuation lines joined, shell variables replaced by placeholders."""
    text = re.sub(r"\\\n", " ", recipe.read_text())
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    return [shlex.split(re.sub(r'"?\$\{?\w+\}?[^"\s]*"?', "X", line))[1:] for line in lines if line.startswith("$PY")]


def main_of(command: list[str]):
    """The ``main(argv)`` a command runs and the argv before its first flag (script path or ``-m module``)."""
    if command[0] == "-m":
        module = importlib.import_module(command[1])
        rest = command[2:]
    else:
        path = ROOT / command[0]
        assert path.is_file(), f"{command[0]} does not exist"
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        rest = command[1:]
    first_flag = next((i for i, arg in enumerate(rest) if arg.startswith("--")), len(rest))
    return module.main, rest[:first_flag], [arg for arg in rest if arg.startswith("--")]


def test_every_shipped_pipeline_has_a_recipe():
    folders = {p.parent.name for p in ROOT.glob("pipelines/*/model_index.json")}
    assert folders and folders == {r.parent.name for r in RECIPES}


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.parent.name for r in RECIPES])
def test_recipe_commands_exist(recipe, monkeypatch):
    subprocess.run(["bash", "-n", str(recipe)], check=True)
    found = commands(recipe)
    assert found, "no $PY commands"
    monkeypatch.syspath_prepend(str(ROOT / "training"))
    for command in found:
        main, positional, flags = main_of(command)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            main([*positional, "--help"])
        missing = [flag for flag in flags if not re.search(re.escape(flag) + r"\b", out.getvalue())]
        assert not missing, f"{' '.join(command[:3])}: unknown flags {missing}"
