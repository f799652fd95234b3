"""``ov-causal export``: an ov_causal IR folder (``export_ir``) or an OVMS repository (``export_ovms``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import OptionError
from ..serving.ovms import check_output, export_ir, export_ovms, graph_text, model_name
from .common import EXIT_OK, MODEL_HELP, PRESET_HELP, Subparsers, check_model_and_names, command, default_of

OVMS_ONLY = {"--name": "name", "--device": "device", "--cache-size": "cache_size", "--max-num-seqs": "max_num_seqs",
             "--no-prefix-caching": "enable_prefix_caching", "--plugin-config": "plugin_config"}


def add_parser(sub: Subparsers) -> None:
    """Add ``export`` and its flags (the ovms ones are keywords of ``export_ovms()``, with its defaults)."""
    exp = command(sub, "export", "export a model to a folder: ov_causal IR (--for ir) or OVMS (--for ovms)", run, check)
    exp.add_argument("model", help=MODEL_HELP)
    exp.add_argument("out", help="folder to write (new or empty unless --force)")
    exp.add_argument("--for", dest="target", choices=["ir", "ovms"], default="ir",
                     help="ir: an export folder any ov_causal loads; ovms: a repository OpenVINO Model Server serves "
                     "(default: %(default)s)")
    exp.add_argument("--preset", default=None, help=PRESET_HELP)
    exp.add_argument("--force", action="store_true", help="write into a non-empty OUT (same-name files replaced)")
    exp.add_argument("--name", default=None, help="ovms: model name clients send (default: MODEL's last part)")
    exp.add_argument("--device", default=default_of(export_ovms, "device"),
                     help="ovms: device OVMS runs the model on (default: %(default)s)")
    exp.add_argument("--cache-size", type=int, metavar="N", default=default_of(export_ovms, "cache_size"),
                     help="ovms: KV cache in GB; 0 grows it as needed (default: %(default)s)")
    exp.add_argument("--max-num-seqs", type=int, metavar="N", default=default_of(export_ovms, "max_num_seqs"),
                     help="ovms: most sequences generated for at once (default: %(default)s)")
    exp.add_argument("--no-prefix-caching", dest="enable_prefix_caching", action="store_false",
                     help="ovms: do not reuse the KV cache of repeated prompt starts")
    exp.add_argument("--plugin-config", default=None, metavar="JSON",
                     help='ovms: OpenVINO properties as JSON, e.g. \'{"KV_CACHE_PRECISION": "u8"}\' (default: none)')


def check(args: argparse.Namespace) -> None:
    """Everything typed, OUT among it, before anything heavy is imported (a refusal takes no model load)."""
    check_model_and_names(args)
    check_output(Path(args.out), args.force)
    if args.target == "ir":
        ovms_only = [flag for flag, keyword in OVMS_ONLY.items()
                     if getattr(args, keyword) != default_of(export_ovms, keyword)]
        if ovms_only:
            raise OptionError(f"{', '.join(ovms_only)} only apply with --for ovms.")
        return
    model_name(args.model, args.name)
    graph_text(device=args.device, cache_size=args.cache_size, max_num_seqs=args.max_num_seqs,
               enable_prefix_caching=args.enable_prefix_caching, plugin_config=plugin_config(args.plugin_config))


def run(args: argparse.Namespace) -> int:
    """Write the folder and print where (with --for ovms, also the commands that serve it)."""
    if args.target == "ir":
        return _export_ir(args)
    result = export_ovms(args.model, args.out, preset=args.preset, device=args.device, cache_size=args.cache_size,
                         max_num_seqs=args.max_num_seqs, enable_prefix_caching=args.enable_prefix_caching,
                         plugin_config=plugin_config(args.plugin_config), name=args.name, force=args.force)
    print(f"OVMS repository written to {result.repository} (model {result.name!r}). Serve it with:")
    for line in result.commands():
        print(f"  {line}")
    return EXIT_OK


def _export_ir(args: argparse.Namespace) -> int:
    print(f"ov_causal export written to {export_ir(args.model, args.out, preset=args.preset, force=args.force)}")
    return EXIT_OK


def plugin_config(text: str | None) -> dict[str, Any]:
    """--plugin-config JSON as a dict ({} without one); anything but a JSON object is an OptionError."""
    try:
        plugin = json.loads(text) if text else {}
    except ValueError as exc:
        raise OptionError(f"--plugin-config {text!r} is not JSON ({exc}).") from None
    if not isinstance(plugin, dict):
        raise OptionError("--plugin-config must be a JSON object such as '{\"KV_CACHE_PRECISION\": \"u8\"}'.")
    return plugin
