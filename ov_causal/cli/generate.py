"""``ov-causal generate``: continue a prompt with ``ov_causal.generate`` (the demo model by default)."""

from __future__ import annotations

import argparse
import sys

from ..model.run import generate
from .common import (
    DEVICE_HELP,
    EXIT_OK,
    MODEL_HELP,
    PRESET_HELP,
    RUNTIME_HELP,
    Subparsers,
    check_model_and_names,
    command,
    default_of,
    keywords,
)

check = check_model_and_names


def add_parser(sub: Subparsers) -> None:
    """Add ``generate`` and its flags (every flag a keyword of ``generate()``, with its default)."""
    gen = command(sub, "generate", "generate text (the shipped demo model when --model is not given)", run, check)
    gen.add_argument("prompt", nargs="?", default=None,
                     help="text to continue (default: a Python function header, for the demo model)")
    gen.add_argument("--model", default=None,
                     help=f"{MODEL_HELP} (default: the demo model shipped with ov_causal, a small Llama trained on "
                     "Python's standard library)")
    gen.add_argument("--preset", default=None, help=PRESET_HELP)
    gen.add_argument("--runtime", default=None, help=RUNTIME_HELP)
    gen.add_argument("--device", default=default_of(generate, "device"), help=DEVICE_HELP)
    gen.add_argument("--max-new-tokens", type=int, metavar="N", default=default_of(generate, "max_new_tokens"),
                     help="most tokens to generate (default: %(default)s)")
    gen.add_argument("--do-sample", action="store_true", help="sample the tokens instead of greedy decoding")
    gen.add_argument("--seed", type=int, metavar="N", default=default_of(generate, "seed"),
                     help="random seed, with --do-sample (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Print the prompt and its continuation, then the speed on stderr."""
    result = generate(**keywords(args, generate))
    print(result.prompt + result.text)
    print(
        f"\n[{result.new_tokens} tokens in {result.seconds:.2f} s: {result.tokens_per_second:.1f} tokens/s; "
        f"model ready in {result.load_seconds:.1f} s]",
        file=sys.stderr,
    )
    return EXIT_OK
