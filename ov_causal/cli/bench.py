"""``ov-causal bench``: time engines and presets side by side, with ``tools.bench.bench``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..errors import OptionError
from ..tools.bench import bench, build_random_checkpoint
from ..tools.versus import AGAINST, bench_against
from ..tools.versus_workloads import WORKLOADS, get_workloads
from .common import EXIT_OK, Subparsers, check_model, check_names, check_paths, command, default_of, split_names

AGAINST_ONLY = ("gguf", "gguf_type", "threads", "workloads", "users", "converter")  # flags of --against alone


def add_parser(sub: Subparsers) -> None:
    """Add ``bench`` and its flags (every flag a keyword of ``bench()`` or of the random model's builder)."""
    cmd = command(sub, "bench", "time engines and presets side by side (medians, JSON, chart)", run, check)
    cmd.add_argument("model", nargs="?", default=None,
                     help="Hub id (org/name) or checkpoint folder (default: a random-weight Llama built locally)")
    cmd.add_argument("--presets", default=None, metavar="NAMES",
                     help="comma-separated presets to measure; auto is allowed (default: "
                          f"{','.join(default_of(bench, 'presets'))}; with --against, the preset with the GGUF's bits)")
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
    add_against(cmd)
    cmd.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to this file")
    cmd.add_argument("--plot", default=None, metavar="FILE",
                     help="also write a PNG chart to this file (needs matplotlib)")


def add_against(cmd: argparse.ArgumentParser) -> None:
    """The flags of ``--against llama.cpp`` (keywords of ``bench_against``)."""
    cmd.add_argument("--against", default=None, choices=AGAINST,
                     help="time to answer per workload class against this engine, on the same weights and threads "
                          "(needs pip install \"ov_causal[llamacpp]\")")
    cmd.add_argument("--gguf", default=None, metavar="FILE",
                     help="--against: the GGUF file of MODEL's weights (default: MODEL if it is a .gguf, else "
                          "converted with llama.cpp's convert_hf_to_gguf.py)")
    cmd.add_argument("--gguf-type", default=None, metavar="TYPE",
                     help="--against: the type a conversion writes (default: "
                          f"{default_of(bench_against, 'gguf_type')})")
    cmd.add_argument("--threads", type=int, default=None, metavar="N",
                     help="--against: threads of every engine (default: the CPUs this process may use)")
    cmd.add_argument("--workloads", default=None, metavar="NAMES",
                     help=f"--against: comma-separated subset of {','.join(WORKLOADS)} (default: all)")
    cmd.add_argument("--users", type=int, default=None, metavar="N",
                     help="--against: concurrent clients of the servers (default: "
                          f"{default_of(bench_against, 'users')})")
    cmd.add_argument("--converter", default=None, metavar="FILE",
                     help="--against: llama.cpp's convert_hf_to_gguf.py, when it is not on the PATH")


def check(args: argparse.Namespace) -> None:
    """The preset names (auto allowed: bench loads each model) and MODEL, before anything heavy is imported."""
    if not (args.against is not None and args.presets == "none"):
        check_names(args, presets_allow_auto=args.against is None)
    check_paths(args)
    if args.against is None:
        given = [f"--{k.replace('_', '-')}" for k in AGAINST_ONLY if getattr(args, k) is not None]
        if given:
            raise OptionError(f"{', '.join(given)} only go with --against llama.cpp.")
        check_model(args.model)
        return
    check_against(args)


def check_against(args: argparse.Namespace) -> None:
    """MODEL (a checkpoint or a .gguf file) and the files and counts of --against."""
    if args.model is None:
        raise OptionError("--against needs MODEL: a checkpoint (folder or Hub id) or a .gguf file.")
    if args.model.lower().endswith(".gguf"):
        if not Path(args.model).is_file():
            raise OptionError(f"MODEL {args.model!r} does not exist: pass a GGUF file or a checkpoint.")
    else:
        check_model(args.model)
    for flag in ("gguf", "converter"):
        path = getattr(args, flag)
        if path is not None and not Path(path).is_file():
            raise OptionError(f"--{flag} {path!r} does not exist: pass a file.")
    for flag in ("threads", "users", "runs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise OptionError(f"--{flag} {value}: pass at least 1.")
    if args.workloads is not None:
        try:
            get_workloads(split_names(args.workloads))
        except OptionError as exc:
            raise OptionError(f"--workloads: {exc}") from None


def run_against(args: argparse.Namespace) -> int:
    """``bench_against`` with the given flags; prints its table (and writes --json / --plot)."""
    options = {k: getattr(args, k) for k in ("gguf", "gguf_type", "threads", "users", "converter")
               if getattr(args, k) is not None}
    if args.workloads is not None:
        options["workloads"] = split_names(args.workloads)
    if args.presets is not None:
        options["presets"] = [] if args.presets.strip() in ("", "none") else split_names(args.presets)
    report = bench_against(args.model, args.against, runs=args.runs, **options)
    print(report.table())
    if args.json:
        report.to_json(args.json)
    if args.plot:
        report.plot(args.plot)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Print the table and one summary per preset (and write --json / --plot)."""
    if args.against is not None:
        return run_against(args)
    presets = split_names(args.presets) if args.presets else list(default_of(bench, "presets"))
    with tempfile.TemporaryDirectory(prefix="ov_causal-bench-") as tmp:
        model = args.model
        if model is None:
            model = build_random_checkpoint(Path(tmp) / "random", args.hidden, args.layers)
            print(f"built a random-weight Llama ({args.hidden} x {args.layers} layers) in {model}", file=sys.stderr)
        report = bench(model, presets, prompt_tokens=args.prompt_tokens,
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
