"""Package seams, read from the source: library code does not depend on the demo, on pytest, or on where its files
sit in a checkout (an installed wheel has no ``pipelines/`` or ``training/`` next to it)."""

from __future__ import annotations

import ast
from pathlib import Path

import diffusion_canon

PACKAGE = Path(diffusion_canon.__file__).parent
# the demo package itself, and the command that runs it
MAY_IMPORT_DEMO = ("demo/", "commands/demo.py")


def modules() -> dict[str, ast.Module]:
    """``{path relative to the package: its syntax tree}`` for every module of the package."""
    found = {p.relative_to(PACKAGE).as_posix(): ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.rglob("*.py")}
    assert "pipelines/pipeline_adm.py" in found and "demo/gallery.py" in found
    return found


def imported(path: str, tree: ast.Module) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in it (lazy imports inside functions too)."""
    package = ["diffusion_canon", *path.split("/")[:-1]]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}  # `from . import demo`
    return names


def test_only_the_demo_imports_the_demo():
    offenders = {path: sorted(n for n in imported(path, tree) if n.split(".")[:2] == ["diffusion_canon", "demo"])
                 for path, tree in modules().items() if not path.startswith(MAY_IMPORT_DEMO)}
    assert {path: names for path, names in offenders.items() if names} == {}
    assert "diffusion_canon.demo.section" in imported("demo/adm.py", modules()["demo/adm.py"])  # the scan sees them


def test_no_module_imports_pytest():
    offenders = [path for path, tree in modules().items()
                 if any(name.split(".")[0] == "pytest" for name in imported(path, tree))]
    assert offenders == []


def test_no_paths_relative_to_the_package_files():
    """``Path(__file__).parents[N]`` reaches into the checkout; the library finds it only through checkout.py."""
    offenders = [f"{path}:{node.lineno}" for path, tree in modules().items() for node in ast.walk(tree)
                 if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                 and node.value.attr == "parents"]
    assert offenders == []
