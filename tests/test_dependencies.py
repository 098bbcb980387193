"""The supported-range check at import: an installed dependency outside the declared range, or a missing one, is one
clear error naming the package, the version found and the range supported."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

from diffusion_canon.dependencies import DependencyError, check_dependencies, unsupported_dependencies


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """A distribution ``fake-canon`` whose requirements are: numpy below 1.0 (the installed numpy is newer), a package
    that does not exist, a satisfied one, and a test-extra one that must be ignored."""
    info = tmp_path / "fake_canon-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-canon\nVersion: 0.1\n"
        "Requires-Dist: numpy<1.0\nRequires-Dist: no-such-package-xyz>=2\nRequires-Dist: packaging>=1\n"
        "Requires-Dist: pytest<1; extra == \"test\"\nProvides-Extra: test\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fake-canon"


def test_each_unsupported_dependency_is_named_with_version_and_range(fake_distribution):
    numpy_version = metadata.version("numpy")
    assert unsupported_dependencies(fake_distribution) == [
        f"numpy {numpy_version} is installed; supported: <1.0",
        "no-such-package-xyz is not installed (supported: >=2)",
    ]
    with pytest.raises(DependencyError, match=rf"numpy {numpy_version} is installed; supported: <1.0") as error:
        check_dependencies(fake_distribution)
    assert isinstance(error.value, ImportError)


def test_this_environment_is_supported_and_an_unknown_distribution_is_not_checked():
    assert unsupported_dependencies() == []
    assert unsupported_dependencies("not-an-installed-distribution") == []


def test_import_fails_with_the_message_when_a_dependency_is_out_of_range():
    """The real import path: the installed numpy's version reported as 0.1 makes ``import diffusion_canon`` fail
    with the one-line reason, not a traceback from inside a dependency."""
    code = ("from importlib import metadata\n"
            "real = metadata.version\n"
            "metadata.version = lambda name: '0.1' if name == 'numpy' else real(name)\n"
            "import diffusion_canon\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DependencyError: diffusion-canon cannot run with the installed packages:" in result.stderr
    assert "numpy 0.1 is installed; supported: >=" in result.stderr
