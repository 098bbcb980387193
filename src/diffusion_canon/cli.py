"""The `diffusion-canon` command line.

Each subcommand is a module of :mod:`diffusion_canon.commands` exposing ``add_parser(subparsers)``, which registers an
argparse sub-parser whose ``func`` default takes the parsed namespace and imports the feature it runs. Add a command
to ``SUBCOMMANDS``. Only the chosen command's module is imported and it imports no torch, diffusers or transformers
(seconds to import), so every ``--help`` is fast and quiet.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# command -> (module relative to this package providing `add_parser(subparsers)`, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "convert": (".commands.convert", "convert a published checkpoint into a diffusers pipeline folder"),
    "demo": (".commands.demo", "build the demo gallery (index.html and PNGs)"),
    "make-base": (".commands.make_base", "train the tiny SD-format glyph base (pipelines/tiny-sd-glyphs)"),
    "train-clip": (".commands.train_clip", "train the tiny glyph CLIP contrastively and report text->image retrieval"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s own arguments are registered (the others are listed by name and help)."""
    parser = argparse.ArgumentParser(
        prog="diffusion-canon",
        description="The classic diffusion papers, implemented exactly, as a diffusers extension.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, (module, help) in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(module, __package__).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=help)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ValueError as error:  # bad input (a path, a flag's value): the message names it; no traceback
        parser.exit(2, f"diffusion-canon {command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
