"""The ``ov-causal`` command: a thin layer over the Python API (every flag is a keyword of it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import LoraError, OptionError, OVCausalError
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
    gen.set_defaults(handler=_generate)

    cache = sub.add_parser("cache", help="list, inspect or clear the export cache")
    cache.add_argument("action", choices=["list", "info", "clear", "verify"])
    cache.add_argument("key", nargs="?", default=None,
                       help="entry key (or its first characters) for 'info'; for 'verify' (default: every entry)")
    cache.add_argument("--older-than", default=None, help="with 'clear': only entries unused for e.g. 30d, 12h")
    cache.add_argument("--cache-dir", default=None, help="cache location (default $OV_CAUSAL_CACHE_DIR or ~/.cache)")
    cache.set_defaults(handler=_cache)

    fuse = sub.add_parser("fuse-lora", help="write a checkpoint with LoRA adapter(s) fused into the base weights")
    fuse.add_argument("base", help="transformers checkpoint folder")
    fuse.add_argument("adapter", nargs="+", help="PEFT adapter folder(s); ADAPTER=WEIGHT to weight them")
    fuse.add_argument("--out", required=True, help="folder for the fused checkpoint")
    fuse.add_argument("--allow-pickle", action="store_true", help="accept adapter_model.bin (pickle) adapters")
    fuse.set_defaults(handler=_fuse_lora)

    for name, help_text in (("eval", "compare presets with the uncompressed model on held-out text"),
                            ("tune", "pick the fastest (or smallest) preset within an accuracy budget")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("model", help="Hub id or checkpoint folder")
        cmd.add_argument("--text", default=None, help="held-out text file (default: the built-in text)")
        cmd.add_argument("--calibration", default=None, help="text file for data-aware presets")
        cmd.add_argument("--max-tokens", type=int, default=4096)
        cmd.add_argument("--window", type=int, default=256)
        cmd.add_argument("--json", default=None, help="write the results as JSON here")
        cmd.add_argument("--plot", default=None, help="write a PNG chart here (needs matplotlib)")
        cmd.add_argument("--presets", default=None, help="comma-separated presets (default: int8 and int4 ones)")
        if name == "tune":
            cmd.add_argument("--max-ppl-increase", default="2%", help="budget, e.g. 2%% or 0.02")
            cmd.add_argument("--objective", choices=["speed", "size"], default="speed")
            cmd.add_argument("--save", default=None, help="save the chosen model to this folder")
        cmd.set_defaults(handler=_eval_or_tune)

    # --- serve (OpenAI-compatible HTTP API on Ray Serve) ---
    srv = sub.add_parser("serve", help="serve a model behind an OpenAI-compatible HTTP API on Ray Serve")
    srv.add_argument("model", help="Hub id, checkpoint folder or OpenVINO export folder")
    srv.add_argument("--preset", default=None, choices=list(PRESETS), help="weight compression preset")
    srv.add_argument("--replicas", type=int, default=1, help="copies of the model serving requests")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--name", default=None, help="model id clients send (default: MODEL as given)")
    srv.add_argument("--device", default="CPU")
    srv.add_argument("--chat-template", default=None, help="Jinja chat template file, for tokenizers without one")
    srv.add_argument("--max-batch", type=int, default=16,
                     help="most waiting requests a replica serves with one generate() call (1: one at a time)")
    srv.set_defaults(handler=_serve)
    # --- end serve ---

    # --- export (an ov_causal export folder, or an OpenVINO Model Server repository) ---
    exp = sub.add_parser("export", help="export a model to a folder: ov_causal IR (--for ir) or OVMS (--for ovms)")
    exp.add_argument("model", help="Hub id, checkpoint folder or OpenVINO export folder")
    exp.add_argument("out", help="folder to write (new or empty unless --force)")
    exp.add_argument("--for", dest="target", choices=["ir", "ovms"], default="ir",
                     help="ir: an export folder any ov_causal loads; ovms: a repository OpenVINO Model Server serves")
    exp.add_argument("--preset", default=None, choices=list(PRESETS), help="weight compression preset")
    exp.add_argument("--force", action="store_true", help="write into a non-empty OUT (same-name files replaced)")
    exp.add_argument("--name", default=None, help="ovms: model name clients send (default: MODEL's last part)")
    exp.add_argument("--device", default="CPU", help="ovms: device OVMS runs the model on")
    exp.add_argument("--cache-size", type=int, default=0, help="ovms: KV cache in GB (0: grows as needed)")
    exp.add_argument("--max-num-seqs", type=int, default=256, help="ovms: sequences generated for at once")
    exp.add_argument("--no-prefix-caching", dest="enable_prefix_caching", action="store_false",
                     help="ovms: do not reuse the KV cache of repeated prompt starts")
    exp.add_argument("--plugin-config", default=None,
                     help='ovms: OpenVINO properties as JSON, e.g. \'{"KV_CACHE_PRECISION": "u8"}\'')
    exp.set_defaults(handler=_export)
    # --- end export ---

    bench = sub.add_parser("bench", help="time engines and presets side by side (medians, JSON, chart)")
    bench.add_argument("model", nargs="?", default=None,
                       help="Hub id or checkpoint folder (default: a random-weight model built locally)")
    bench.add_argument("--presets", default="int8", help="comma-separated presets")
    bench.add_argument("--prompt-tokens", type=int, default=64)
    bench.add_argument("--new-tokens", type=int, default=32)
    bench.add_argument("--runs", type=int, default=5)
    bench.add_argument("--num-prompts", type=int, default=8)
    bench.add_argument("--hidden", type=int, default=1024, help="random model: hidden size")
    bench.add_argument("--layers", type=int, default=16, help="random model: layers")
    bench.add_argument("--peak-rss", action="store_true",
                       help="also measure each engine's peak RSS in a fresh process of its own (slower)")
    bench.add_argument("--json", default=None)
    bench.add_argument("--plot", default=None)
    bench.set_defaults(handler=_bench)
    return parser


def _generate(args: argparse.Namespace) -> None:
    from .generation import DEMO_PROMPT, generate

    options = vars(args)
    options.pop("command")
    options.pop("handler")
    if options["prompt"] is None:
        options["prompt"] = DEMO_PROMPT
    result = generate(**options)
    print(result.prompt + result.text)
    print(
        f"\n[{result.new_tokens} tokens in {result.seconds:.2f} s: {result.tokens_per_second:.1f} tokens/s; "
        f"model ready in {result.load_seconds:.1f} s]",
        file=sys.stderr,
    )


def _cache(args: argparse.Namespace) -> None:
    from . import cache

    root = cache.cache_root(args.cache_dir)
    if args.action == "clear":
        age = None if args.older_than is None else cache.parse_age(args.older_than)
        removed = cache.clear(root, age)
        print(f"removed {len(removed)} entr{'y' if len(removed) == 1 else 'ies'} "
              f"({sum(e.size for e in removed) / 2**20:.1f} MiB) from {root}")
        return
    if args.action == "verify":
        _verify(cache.verify_entries(root, args.key), root)
        return
    entries = cache.list_entries(root)
    if args.action == "list":
        print(f"{len(entries)} entries in {root}")
        for entry in entries:
            print(entry.row())
        return
    matches = [e for e in entries if args.key and e.key.startswith(args.key)]
    if len(matches) != 1:
        raise OptionError(f"'cache info' needs the key (or its start) of one entry; {args.key!r} matches "
                          f"{len(matches)}. See 'ov-causal cache list'.")
    try:
        print((matches[0].folder / cache.ENTRY_FILE).read_text())
    except OSError:
        print(f"{matches[0].folder}: no readable {cache.ENTRY_FILE}")
    print(f"state: {'ok' if matches[0].problem is None else 'DAMAGED: ' + matches[0].problem}")


def _verify(results: dict[str, str | None], root: Path) -> None:
    """Print each entry's state after a full re-hash; exit 1 when one is damaged."""
    print(f"verified {len(results)} entr{'y' if len(results) == 1 else 'ies'} in {root} (every file re-hashed)")
    for key, problem in results.items():
        print(f"{key[:12]}  {'ok' if problem is None else 'DAMAGED: ' + problem}")
    if any(results.values()):
        print("damaged entries are rebuilt by the next load that needs them; 'ov-causal cache clear' removes all.")
        raise SystemExit(1)


def _percent(text: str) -> float:
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise OptionError(f"--max-ppl-increase {text!r} is not valid: use e.g. 2% or 0.02.") from None


def _eval_or_tune(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .evaluate import DEFAULT_PRESETS, evaluate
    from .presets import get_preset

    presets = tuple(p.strip() for p in args.presets.split(",")) if args.presets else None
    for preset in presets or ():
        get_preset(preset)  # an unknown name fails before any model work
    calibration = Path(args.calibration) if args.calibration else None
    text = Path(args.text) if args.text else None
    common = dict(calibration=calibration, max_tokens=args.max_tokens, window=args.window)
    if args.command == "eval":
        result = evaluate(args.model, presets or DEFAULT_PRESETS, text, **common)
        print(result.table())
    else:
        from .tune import tune

        result = tune(args.model, _percent(args.max_ppl_increase), args.objective, presets, text,
                      save=args.save, **common)
        print(result.table())
        if args.save and result.choice:
            print(f"saved {result.choice} to {args.save}")
    if args.json:
        Path(args.json).write_text(result.to_json() + "\n", encoding="utf-8")
    if args.plot:
        result.plot(args.plot)
    if args.command == "tune" and result.choice is None:
        raise SystemExit(3)


def _bench(args: argparse.Namespace) -> None:
    import tempfile
    from pathlib import Path

    from .bench import bench, build_random_checkpoint

    with tempfile.TemporaryDirectory(prefix="ov_causal-bench-") as tmp:
        model = args.model
        if model is None:
            model = build_random_checkpoint(Path(tmp) / "random", args.hidden, args.layers)
            print(f"built a random-weight Llama ({args.hidden} x {args.layers} layers) in {model}", file=sys.stderr)
        report = bench(model, [p.strip() for p in args.presets.split(",")], prompt_tokens=args.prompt_tokens,
                       new_tokens=args.new_tokens, runs=args.runs, num_prompts=args.num_prompts,
                       peak_rss=args.peak_rss)
    print(report.table())
    for preset in dict.fromkeys(r.preset for r in report.rows if r.engine != "transformers"):
        print(f"{preset}: {report.summary(preset)}")
    if args.json:
        report.to_json(args.json)
    if args.plot:
        report.plot(args.plot)


def _fuse_lora(args: argparse.Namespace) -> None:
    from .lora import fuse_lora

    pairs = []
    for item in args.adapter:
        path, _, weight = item.partition("=")
        try:
            pairs.append((path, float(weight) if weight else 1.0))
        except ValueError:
            raise OptionError(f"adapter {item!r}: the weight after '=' must be a number, e.g. {path}=0.5") from None
    try:
        out = fuse_lora(args.base, pairs, args.out, allow_pickle=args.allow_pickle)
    except LoraError as exc:
        raise exc.naming("--allow-pickle") from None
    print(f"fused checkpoint written to {out}")


# --- serve ---
def _serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .serve import serve, wait

    template = None
    if args.chat_template is not None:
        try:
            template = Path(args.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise OptionError(f"--chat-template {args.chat_template!r} cannot be read: {exc.strerror}.") from None
    url = serve(args.model, preset=args.preset, replicas=args.replicas, host=args.host, port=args.port,
                name=args.name, device=args.device, chat_template=template, max_batch=args.max_batch,
                blocking=False)
    name = args.name or args.model
    print(f"serving {name!r} at {url} ({args.replicas} replica{'s' if args.replicas > 1 else ''}); Ctrl-C stops.\n"
          "Try it:\n"
          "  from openai import OpenAI\n"
          f"  client = OpenAI(base_url={url!r}, api_key='none')\n"
          f"  print(client.completions.create(model={name!r}, prompt='def add(a, b):', max_tokens=32)"
          ".choices[0].text)", flush=True)
    wait()
# --- end serve ---


# --- export ---
def _export(args: argparse.Namespace) -> None:
    import json

    from .ovms import export_ir, export_ovms

    if args.target == "ir":
        ovms_only = [flag for flag, value, default in (
            ("--name", args.name, None), ("--device", args.device, "CPU"), ("--cache-size", args.cache_size, 0),
            ("--max-num-seqs", args.max_num_seqs, 256), ("--no-prefix-caching", args.enable_prefix_caching, True),
            ("--plugin-config", args.plugin_config, None)) if value != default]
        if ovms_only:
            raise OptionError(f"{', '.join(ovms_only)} only apply with --for ovms.")
        print(f"ov_causal export written to {export_ir(args.model, args.out, preset=args.preset, force=args.force)}")
        return
    try:
        plugin = json.loads(args.plugin_config) if args.plugin_config else {}
    except ValueError as exc:
        raise OptionError(f"--plugin-config {args.plugin_config!r} is not JSON ({exc}).") from None
    if not isinstance(plugin, dict):
        raise OptionError("--plugin-config must be a JSON object such as '{\"KV_CACHE_PRECISION\": \"u8\"}'.")
    result = export_ovms(args.model, args.out, preset=args.preset, device=args.device, cache_size=args.cache_size,
                         max_num_seqs=args.max_num_seqs, enable_prefix_caching=args.enable_prefix_caching,
                         plugin_config=plugin, name=args.name, force=args.force)
    print(f"OVMS repository written to {result.repository} (model {result.name!r}). Serve it with:")
    for command in result.commands():
        print(f"  {command}")
# --- end export ---


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(["generate"] if argv is not None and not argv else argv)
    if args.command is None:
        args = _parser().parse_args(["generate"])
    try:
        args.handler(args)
    except OVCausalError as exc:
        print(f"ov-causal: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
