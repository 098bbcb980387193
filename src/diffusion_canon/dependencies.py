"""The supported range of every dependency, checked once when the package is imported.

A dependency outside its range fails later, deep inside itself (transformers 5.24 asking for a peft that does not
exist, say); this turns that into one message at import naming the package, the version found and the range
supported. The ranges are the installed distribution's own requirements (pyproject.toml's ``dependencies``), so
they are stated once. From a source tree that was never installed there is no metadata, and nothing is checked.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

DISTRIBUTION = "diffusion-canon"


class DependencyError(ImportError):
    """A dependency is missing or outside the range this release supports."""


def unsupported_dependencies(distribution: str = DISTRIBUTION) -> list[str]:
    """One line per dependency of ``distribution`` that is missing or outside its declared range."""
    try:
        requirements = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return []
    problems = []
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra's requirement (e.g. the test tools): not needed at run time
        try:
            found = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed (supported: {requirement.specifier or 'any'})")
            continue
        if not requirement.specifier.contains(Version(found), prereleases=True):
            problems.append(f"{requirement.name} {found} is installed; supported: {requirement.specifier}")
    return problems


def check_dependencies(distribution: str = DISTRIBUTION) -> None:
    """Raise :class:`DependencyError` listing every unsupported dependency (see the module docstring)."""
    problems = unsupported_dependencies(distribution)
    if problems:
        raise DependencyError(
            f"{distribution} cannot run with the installed packages:\n  " + "\n  ".join(problems)
            + f"\nInstall versions in the supported ranges, e.g. pip install -c constraints.txt {distribution} "
            "(the tested set, in the source repository), or pip install --upgrade the packages named."
        )
