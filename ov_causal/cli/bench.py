"""``ov-causal bench``: time engines and presets side by side, with ``tools.bench.bench``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..tools.bench import bench, build_random_checkpoint
from .common import EXIT_OK, Subparsers, check_model, check_names, check_paths, command, default_of, split_names


def add_parser(sub: Subparsers) -> None:
    """Add ``bench`` and its flags (every flag a keyword of ``bench()`` or of the random model's builder)."""
    cmd = command(sub, "bench", "time engines and presets side by side (medians, JSON, chart)", run, check)
    cmd.add_argument("model", nargs="?", default=None,
                     help="Hub id (org/name) or checkpoint folder (default: a random-weight Llama built locally)")
    cmd.add_argument("--presets", default=",".join(default_of(bench, "presets")), metavar="NAMES",
                     help="comma-separated presets to measure; auto is allowed (default: %(default)s)")
    cmd.add_argument("--prompt-tokens", type=int, metavar="N", default=default_of(bench, "prompt_tokens"),
                     help="prompt length in tokens (default: %(default)s)")
    cmd.add_argument("--new-tokens", type=int, metavar="N", default=default_of(bench, "new_tokens"),
                     help="tokens generated per call (default: %(default)s)")
    cmd.add_argument("--runs", type=int, metavar="N", default=default_of(bench, "runs"),
                     help="timed repetitions per measure, after one warm-up; medians reported (default: %(default)s)")
    cmd.add_argument("--num-prompts", type=int, metavar="N", default=default_of(bench, "num_prompts"),
                     help="prompts in the throughput measure (default: %(default)s)")
    cmd.add_argument("--hidden", type=int, metavar="N", default=default_of(build_random_checkpoint, "hidden"),
                     help="random model: hidden size (default: %(default)s)")
    cmd.add_argument("--layers", type=int, metavar="N", default=default_of(build_random_checkpoint, "layers"),
                     help="random model: layers (default: %(default)s)")
    cmd.add_argument("--peak-rss", action="store_true",
                     help="also measure each engine's peak RSS in a fresh process of its own (slower)")
    cmd.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to this file")
    cmd.add_argument("--plot", default=None, metavar="FILE",
                     help="also write a PNG chart to this file (needs matplotlib)")


def check(args: argparse.Namespace) -> None:
    """The preset names (auto allowed: bench loads each model) and MODEL, before anything heavy is imported."""
    check_names(args, presets_allow_auto=True)
    check_paths(args)
    check_model(args.model)


def run(args: argparse.Namespace) -> int:
    """Print the table and one summary per preset (and write --json / --plot)."""
    with tempfile.TemporaryDirectory(prefix="ov_causal-bench-") as tmp:
        model = args.model
        if model is None:
            model = build_random_checkpoint(Path(tmp) / "random", args.hidden, args.layers)
            print(f"built a random-weight Llama ({args.hidden} x {args.layers} layers) in {model}", file=sys.stderr)
        report = bench(model, split_names(args.presets), prompt_tokens=args.prompt_tokens,
                       new_tokens=args.new_tokens, runs=args.runs, num_prompts=args.num_prompts,
                       peak_rss=args.peak_rss)
    print(report.table())
    for preset in dict.fromkeys(r.preset for r in report.rows if r.engine != "transformers"):
        print(f"{preset}: {report.summary(preset)}")
    if args.json:
        report.to_json(args.json)
    if args.plot:
        report.plot(args.plot)
    return EXIT_OK
