"""``diffusion-canon demo``: its arguments; the work is :func:`diffusion_canon.demo.run_demo`."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", description="Build the demo gallery (index.html and PNGs).")
    parser.add_argument("--output", default="outputs/demo", help="folder for index.html and the PNGs")
    parser.add_argument("--sections", nargs="+", metavar="MODULE:FUNCTION", help="only these section providers")
    parser.add_argument("--pipelines", help="the folder of shipped pipeline folders (default: the checkout's "
                        "pipelines/, when run from inside the checkout)")
    parser.add_argument("--train", action="store_true", help="also build the sections that train models in-process "
                        "(the fine-tuning gallery, 5.4 min on a 2-core CPU)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    index, failed = run_demo(args.output, args.sections, args.pipelines, train=args.train)
    print(f"demo written to {index.resolve()}")
    if failed:
        print(f"{len(failed)} section(s) failed: {', '.join(failed)}")
    return 1 if failed else 0
