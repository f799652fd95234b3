"""The ``ov-causal`` command: a thin layer over the Python API (every flag is a keyword of it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .errors import OVCausalError
from .presets import PRESETS, RUNTIMES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov-causal", description="Run Hugging Face causal LMs on OpenVINO.")
    sub = parser.add_subparsers(dest="command")
    gen = sub.add_parser("generate", help="generate text (the shipped demo model when --model is not given)")
    gen.add_argument("prompt", nargs="?", default=None, help="text to continue (default: a Python function header)")
    gen.add_argument("--model", default=None, help="Hub id, checkpoint folder or OpenVINO export folder")
    gen.add_argument("--preset", default=None, choices=list(PRESETS), help="weight compression preset")
    gen.add_argument("--runtime", default=None, choices=list(RUNTIMES), help="runtime preset (default: latency)")
    gen.add_argument("--device", default="CPU")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--do-sample", action="store_true")
    gen.add_argument("--seed", type=int, default=0)
    return parser


def _generate(args: argparse.Namespace) -> None:
    from .generation import DEMO_PROMPT, generate

    options = vars(args)
    options.pop("command")
    if options["prompt"] is None:
        options["prompt"] = DEMO_PROMPT
    result = generate(**options)
    print(result.prompt + result.text)
    print(
        f"\n[{result.new_tokens} tokens in {result.seconds:.2f} s: {result.tokens_per_second:.1f} tokens/s; "
        f"model ready in {result.load_seconds:.1f} s]",
        file=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(["generate"] if argv is not None and not argv else argv)
    if args.command is None:
        args = _parser().parse_args(["generate"])
    try:
        _generate(args)
    except OVCausalError as exc:
        print(f"ov-causal: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
