"""``ov-causal fuse-lora``: write a checkpoint with LoRA adapters fused in, with ``ov_causal.fuse_lora``."""

from __future__ import annotations

import argparse

from ..convert.lora import fuse_lora
from ..errors import LoraError, OptionError
from .common import EXIT_OK, Subparsers, check_model, command


def add_parser(sub: Subparsers) -> None:
    """Add ``fuse-lora`` and its flags."""
    fuse = command(sub, "fuse-lora", "write a checkpoint with LoRA adapter(s) fused into the base weights", run, check)
    fuse.add_argument("base", help="the base model's transformers checkpoint folder")
    fuse.add_argument("adapter", nargs="+", help="PEFT adapter folder(s); ADAPTER=WEIGHT scales one (default weight 1)")
    fuse.add_argument("--out", required=True, metavar="FOLDER", help="folder to write the fused checkpoint to")
    fuse.add_argument("--allow-pickle", action="store_true",
                      help="accept adapter_model.bin (pickle) adapters: unpickling runs code, trust the source")


def check(args: argparse.Namespace) -> None:
    """BASE must be a model folder (or a Hub id, left to the API)."""
    check_model(args.base)


def adapter_weights(items: list[str]) -> list[tuple[str, float]]:
    """``["a", "b=0.5"]`` -> ``[("a", 1.0), ("b", 0.5)]``; a weight that is no number is an OptionError."""
    pairs = []
    for item in items:
        path, _, weight = item.partition("=")
        try:
            pairs.append((path, float(weight) if weight else 1.0))
        except ValueError:
            raise OptionError(f"adapter {item!r}: the weight after '=' must be a number, e.g. {path}=0.5") from None
    return pairs


def run(args: argparse.Namespace) -> int:
    """Fuse the adapters into BASE and write the checkpoint to --out."""
    adapters = adapter_weights(args.adapter)
    try:
        out = fuse_lora(args.base, adapters, args.out, allow_pickle=args.allow_pickle)
    except LoraError as exc:
        raise exc.naming("--allow-pickle") from None
    print(f"fused checkpoint written to {out}")
    return EXIT_OK
