"""``ov-causal eval``: compare presets with the uncompressed model on held-out text, with ``tools.evaluate``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..tools.evaluate import DEFAULT_PRESETS, evaluate
from .common import EXIT_OK, Subparsers, check_model_and_names, command, default_of, split_names

check = check_model_and_names


def add_parser(sub: Subparsers) -> None:
    """Add ``eval`` and its flags."""
    cmd = command(sub, "eval", "compare presets with the uncompressed model on held-out text", run, check)
    cmd.add_argument("model", help="Hub id (org/name) or checkpoint folder, or an fp32/fp16 OpenVINO export folder")
    add_measure_arguments(cmd, ", ".join(DEFAULT_PRESETS))


def add_measure_arguments(cmd: argparse.ArgumentParser, default_presets: str) -> None:
    """The flags ``eval`` and ``tune`` share: the text, its length and window, the outputs, the presets."""
    cmd.add_argument("--text", default=None, metavar="FILE",
                     help="held-out text file to measure on (default: built-in Python source never trained on)")
    cmd.add_argument("--calibration", default=None, metavar="FILE",
                     help="text file for data-aware presets (awq, gptq); keep it apart from --text")
    cmd.add_argument("--max-tokens", type=int, metavar="N", default=default_of(evaluate, "max_tokens"),
                     help="most tokens of the text to score (default: %(default)s)")
    cmd.add_argument("--window", type=int, metavar="N", default=default_of(evaluate, "window"),
                     help="perplexity context length in tokens (default: %(default)s)")
    cmd.add_argument("--num-prompts", type=int, metavar="N", default=default_of(evaluate, "num_prompts"),
                     help="prompts whose greedy continuations are compared (default: %(default)s)")
    cmd.add_argument("--speed-runs", type=int, metavar="N", default=default_of(evaluate, "speed_runs"),
                     help="timed decode runs per model, median reported (default: %(default)s)")
    cmd.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to this file")
    cmd.add_argument("--plot", default=None, metavar="FILE",
                     help="also write a PNG chart to this file (needs matplotlib)")
    cmd.add_argument("--presets", default=None, metavar="NAMES",
                     help=f"comma-separated presets to compare (default: {default_presets})")


def measure_keywords(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords ``evaluate()`` and ``tune()`` share, from the flags of ``add_measure_arguments``."""
    return dict(text=_path(args.text), calibration=_path(args.calibration), max_tokens=args.max_tokens,
                window=args.window, num_prompts=args.num_prompts, speed_runs=args.speed_runs)


def presets_given(args: argparse.Namespace) -> tuple[str, ...] | None:
    """--presets as a tuple, or None when it was not given."""
    return tuple(split_names(args.presets)) if args.presets else None


def write_outputs(result: Any, args: argparse.Namespace) -> None:
    """--json and --plot, for an ``EvalReport`` or a ``TuneResult``."""
    if args.json:
        Path(args.json).write_text(result.to_json() + "\n", encoding="utf-8")
    if args.plot:
        result.plot(args.plot)


def run(args: argparse.Namespace) -> int:
    """Print the comparison table (and write --json / --plot)."""
    result = evaluate(args.model, presets_given(args) or DEFAULT_PRESETS, **measure_keywords(args))
    print(result.table())
    write_outputs(result, args)
    return EXIT_OK


def _path(name: str | None) -> Path | None:
    return Path(name) if name else None
