import subprocess
import sys

import pytest

import diffusion_canon
from diffusion_canon.cli import SUBCOMMANDS, build_parser, main


def test_every_export_resolves():
    for name in diffusion_canon.__all__:
        assert getattr(diffusion_canon, name) is not None, name


def test_unknown_attribute_is_an_attribute_error():
    try:
        diffusion_canon.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("expected AttributeError")


def test_cli_help_lists_subcommands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "usage: diffusion-canon" in out
    for action in build_parser()._subparsers._group_actions:
        for name in action.choices:
            assert name in out


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "diffusion_canon.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "diffusion-canon" in result.stdout


@pytest.mark.parametrize("argv", [[], *([name, "--help"] for name in SUBCOMMANDS), ["convert", "guided-diffusion", "--help"]])
def test_help_imports_no_heavy_library_and_is_quiet(argv):
    """`--help` of every command must not import torch, diffusers or transformers (7-30 s and torchvision warnings
    before; 0.1-0.2 s without them)."""
    code = (f"import sys; from diffusion_canon.cli import main\ntry: main({argv!r})\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "usage: diffusion-canon" in result.stdout


def test_cli_subcommand_help_shows_its_arguments(capsys):
    try:
        main(["make-base", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    assert "--unet_steps" in capsys.readouterr().out
