"""The ``ov-causal`` command: a thin layer over the Python API (every flag is a keyword of it).

One module per command, each with ``add_parser(sub)`` (its flags), ``check(args)`` (what was typed, checked
before anything heavy is imported) and ``run(args)`` (the work; returns the exit status). What they share,
the exit statuses among it, is in ``common``.
"""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentParser
from collections.abc import Sequence

from .. import __version__
from ..errors import OVCausalError, suggest
from . import bench, cache, evaluate, export, fuse_lora, generate, serve, tune
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_STATUS, CommandParser

COMMANDS = (generate, cache, fuse_lora, evaluate, tune, serve, export, bench)  # in the order --help lists them


def build_parser() -> ArgumentParser:
    """The parser of ``ov-causal`` with every command (the CLI reference in the docs is rendered from it)."""
    parser = ArgumentParser(
        prog="ov-causal", description="Run Hugging Face causal LMs on OpenVINO. Without a command: generate.",
        epilog=f"Run 'ov-causal COMMAND --help' for a command's options.\n\n{EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version of ov_causal and exit")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND", parser_class=CommandParser)
    for module in COMMANDS:
        module.add_parser(sub)
    parser.set_defaults(commands=tuple(sub.choices))  # what main() suggests from for a misspelt command
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ov-causal`` with ``argv`` (default: the command line); returns the exit status (see EXIT_STATUS)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    names = list(parser.get_default("commands"))
    if argv and not argv[0].startswith("-") and argv[0] not in names:
        parser.error(f"unknown command {argv[0]!r}.{suggest(argv[0], names)} Commands: {', '.join(names)}.")
    args = parser.parse_args(argv or ["generate"])
    if args.command is None:
        args = parser.parse_args(["generate"])
    try:
        args.check(args)
        return args.run(args)
    except OVCausalError as exc:
        print(f"ov-causal: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: staging folders were removed on the way up; one line, no traceback
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
