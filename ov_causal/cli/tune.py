"""``ov-causal tune``: pick the fastest (or smallest) preset within an accuracy budget, with ``tools.tune``."""

from __future__ import annotations

import argparse

from ..errors import OptionError
from ..tools.tune import ALL_CANDIDATES, CANDIDATES, DATA_AWARE_CANDIDATES, tune
from ..tools.workloads import WORKLOADS
from .common import EXIT_NO_CHOICE, EXIT_OK, Subparsers, check_model, check_names, check_paths, command, default_of
from .evaluate import add_measure_arguments, measure_keywords, presets_given, write_outputs


def add_parser(sub: Subparsers) -> None:
    """Add ``tune`` and its flags."""
    cmd = command(sub, "tune", "pick the fastest (or smallest) preset within an accuracy budget", run, check,
                  epilog=f"exit status {EXIT_NO_CHOICE}: no preset met the budget (the table shows why).")
    cmd.add_argument("model", help="Hub id (org/name) or checkpoint folder")
    add_measure_arguments(cmd, f"{', '.join(CANDIDATES)}; with --calibration also {', '.join(DATA_AWARE_CANDIDATES)}; "
                               f"the thorough run: {','.join(ALL_CANDIDATES)}")
    cmd.add_argument("--max-ppl-increase", default=f"{default_of(tune, 'max_ppl_increase') * 100:g}%",
                     help="accuracy budget: perplexity increase over fp32, e.g. 2%% or 0.02 (default: %(default)s)")
    cmd.add_argument("--objective", choices=["speed", "size"], default=default_of(tune, "objective"),
                     help="speed: most decode tokens/s on this machine; size: smallest model (default: %(default)s)")
    cmd.add_argument("--workload", choices=list(WORKLOADS), default=None,
                     help="with --objective speed: rank by the time to answer one request of this workload ("
                          + "; ".join(f"{w.name}: {w.prompt_tokens}-token prompt, {w.new_tokens} new tokens"
                                      for w in WORKLOADS.values())
                          + ") instead of decode tokens/s; measures prefill speed too")
    cmd.add_argument("--save", default=None, metavar="FOLDER", help="save the chosen model to this folder")


def percent(text: str) -> float:
    """``"2%"`` or ``"0.02"`` -> 0.02; anything else is an OptionError naming --max-ppl-increase."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise OptionError(f"--max-ppl-increase {text!r} is not valid: use e.g. 2% or 0.02.") from None


def check(args: argparse.Namespace) -> None:
    """The preset names, the budget and MODEL, before anything heavy is imported."""
    check_names(args)
    check_paths(args)
    percent(args.max_ppl_increase)
    if args.workload and args.objective != "speed":
        raise OptionError(f"--workload {args.workload} ranks by time to answer, which only --objective speed uses: "
                          "drop --workload or use --objective speed.")
    check_model(args.model)


def run(args: argparse.Namespace) -> int:
    """Print the table, save the choice with --save; EXIT_NO_CHOICE when no preset met the budget."""
    result = tune(args.model, percent(args.max_ppl_increase), args.objective, presets_given(args),
                  workload=args.workload, save=args.save, **measure_keywords(args))
    print(result.table())
    if args.save and result.choice:
        print(f"saved {result.choice} to {args.save}")
    write_outputs(result, args)
    return EXIT_NO_CHOICE if result.choice is None else EXIT_OK
