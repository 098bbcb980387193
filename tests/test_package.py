import subprocess
import sys

import diffusion_canon
from diffusion_canon.cli import build_parser, main


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


def test_cli_imports_only_the_chosen_command():
    """`--help` must not import torch (seconds, and transformers' warnings); a command imports its own module."""
    code = ("import sys; from diffusion_canon.cli import main; main([]); assert 'torch' not in sys.modules, 'torch'; "
            "from diffusion_canon.cli import build_parser; build_parser('convert'); "
            "assert 'diffusion_canon.convert.cli' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torchvision" not in result.stderr


def test_cli_subcommand_help_shows_its_arguments(capsys):
    try:
        main(["make-base", "--help"])
    except SystemExit as stop:
        assert stop.code == 0
    assert "--unet_steps" in capsys.readouterr().out
