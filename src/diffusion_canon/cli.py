"""The `diffusion-canon` command line.

Each subcommand lives in the module that owns the feature and exposes ``add_parser(subparsers)``, which registers an
argparse sub-parser whose ``func`` default takes the parsed namespace. Add a feature's module to ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# modules (relative to this package) that provide `add_parser(subparsers)`; imported only when the CLI runs
_SUBCOMMANDS: list[str] = [
    ".convert.cli",
    ".demo",
    ".finetune.make_base",
    ".unclip.clip_training",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-canon",
        description="The classic diffusion papers, implemented exactly, as a diffusers extension.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in _SUBCOMMANDS:
        importlib.import_module(module, __package__).add_parser(subparsers)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
