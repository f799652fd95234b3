"""The ``ov-causal`` command: a thin layer over the Python API (every flag is a keyword of it)."""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentParser
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..build.sources import find_local
from ..config.presets import PRESETS, RUNTIMES, get_preset, get_runtime
from ..errors import LoraError, OptionError, OVCausalError, PresetError

AUTO = "auto"
EXIT_STATUS = """exit status:
  0  done
  2  a usage error, or an error ov_causal reports as 'ov-causal: error: ...' (a misspelt preset, a wrong model path)
  3  'ov-causal tune' found no preset within the budget"""
MODEL_HELP = "Hub id (org/name) or local folder: a Hugging Face checkpoint or an OpenVINO export"
PRESET_HELP = (
    f"weight compression preset: {', '.join(PRESETS)}, or auto (the choice 'ov-causal tune' saved for this model, "
    "else a rule by model size and CPU) (default: int8 above 1B parameters, none below; an export keeps its weights)"
)
RUNTIME_HELP = (
    f"runtime preset (OpenVINO compile options): {', '.join(RUNTIMES)} (default: the one an export folder was "
    "saved with, else the default for the model's weights, as in from_pretrained)"
)
DEVICE_HELP = "OpenVINO device, e.g. CPU or GPU (default: %(default)s)"


def _command(sub: argparse._SubParsersAction, name: str, summary: str, epilog: str | None = None) -> ArgumentParser:
    """A subcommand whose --help opens with its summary (the same line 'ov-causal --help' lists)."""
    return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", epilog=epilog)


def _add_generate(sub: argparse._SubParsersAction) -> None:
    gen = _command(sub, "generate", "generate text (the shipped demo model when --model is not given)")
    gen.add_argument("prompt", nargs="?", default=None,
                     help="text to continue (default: a Python function header, for the demo model)")
    gen.add_argument("--model", default=None,
                     help=f"{MODEL_HELP} (default: the demo model shipped with ov_causal, a small Llama trained on "
                     "Python's standard library)")
    gen.add_argument("--preset", default=None, help=PRESET_HELP)
    gen.add_argument("--runtime", default=None, help=RUNTIME_HELP)
    gen.add_argument("--device", default="CPU", help=DEVICE_HELP)
    gen.add_argument("--max-new-tokens", type=int, metavar="N", default=64,
                     help="most tokens to generate (default: %(default)s)")
    gen.add_argument("--do-sample", action="store_true", help="sample the tokens instead of greedy decoding")
    gen.add_argument("--seed", type=int, metavar="N", default=0,
                     help="random seed, with --do-sample (default: %(default)s)")
    gen.set_defaults(handler=_generate)


def _add_cache(sub: argparse._SubParsersAction) -> None:
    cache = _command(sub, "cache", "list, inspect or clear the export cache")
    cache.add_argument("action", choices=["list", "info", "clear", "verify"],
                       help="list: every entry; info KEY: one entry's manifest and state; clear: remove entries; "
                       "verify [KEY]: re-hash every file of the entries (exit status 1 if one is damaged)")
    cache.add_argument("key", nargs="?", default=None,
                       help="with 'info': the entry's key, or its first characters; with 'verify': the same "
                       "(default: every entry)")
    cache.add_argument("--older-than", default=None, metavar="AGE",
                       help="with 'clear': only entries unused this long, e.g. 30d, 12h, 45m (default: every entry)")
    cache.add_argument("--cache-dir", default=None, metavar="FOLDER",
                       help="cache location (default: $OV_CAUSAL_CACHE_DIR, else ~/.cache/ov_causal)")
    cache.set_defaults(handler=_cache)


def _add_fuse_lora(sub: argparse._SubParsersAction) -> None:
    fuse = _command(sub, "fuse-lora", "write a checkpoint with LoRA adapter(s) fused into the base weights")
    fuse.add_argument("base", help="the base model's transformers checkpoint folder")
    fuse.add_argument("adapter", nargs="+", help="PEFT adapter folder(s); ADAPTER=WEIGHT scales one (default weight 1)")
    fuse.add_argument("--out", required=True, metavar="FOLDER", help="folder to write the fused checkpoint to")
    fuse.add_argument("--allow-pickle", action="store_true",
                      help="accept adapter_model.bin (pickle) adapters: unpickling runs code, trust the source")
    fuse.set_defaults(handler=_fuse_lora)


def _add_eval_and_tune(sub: argparse._SubParsersAction) -> None:
    from ..tools.evaluate import DEFAULT_PRESETS
    from ..tools.tune import CANDIDATES, DATA_AWARE_CANDIDATES

    for name, summary, presets in (
        ("eval", "compare presets with the uncompressed model on held-out text", ", ".join(DEFAULT_PRESETS)),
        ("tune", "pick the fastest (or smallest) preset within an accuracy budget",
         f"{', '.join(CANDIDATES)}; with --calibration also {', '.join(DATA_AWARE_CANDIDATES)}"),
    ):
        epilog = "exit status 3: no preset met the budget (the table shows why)." if name == "tune" else None
        cmd = _command(sub, name, summary, epilog)
        cmd.add_argument("model", help="Hub id (org/name) or checkpoint folder"
                         + (", or an fp32/fp16 OpenVINO export folder" if name == "eval" else ""))
        cmd.add_argument("--text", default=None, metavar="FILE",
                         help="held-out text file to measure on (default: built-in Python source never trained on)")
        cmd.add_argument("--calibration", default=None, metavar="FILE",
                         help="text file for data-aware presets (awq, gptq); keep it apart from --text")
        cmd.add_argument("--max-tokens", type=int, metavar="N", default=4096,
                         help="most tokens of the text to score (default: %(default)s)")
        cmd.add_argument("--window", type=int, metavar="N", default=256,
                         help="perplexity context length in tokens (default: %(default)s)")
        cmd.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to this file")
        cmd.add_argument("--plot", default=None, metavar="FILE",
                         help="also write a PNG chart to this file (needs matplotlib)")
        cmd.add_argument("--presets", default=None, metavar="NAMES",
                         help=f"comma-separated presets to compare (default: {presets})")
        if name == "tune":
            cmd.add_argument("--max-ppl-increase", default="2%",
                             help="accuracy budget: perplexity increase over fp32, e.g. 2%% or 0.02 "
                             "(default: %(default)s)")
            cmd.add_argument("--objective", choices=["speed", "size"], default="speed",
                             help="speed: most decode tokens/s on this machine; size: smallest model "
                             "(default: %(default)s)")
            cmd.add_argument("--save", default=None, metavar="FOLDER", help="save the chosen model to this folder")
        cmd.set_defaults(handler=_eval_or_tune)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    srv = _command(sub, "serve", "serve a model behind an OpenAI-compatible HTTP API on Ray Serve")
    srv.add_argument("model", help=MODEL_HELP)
    srv.add_argument("--preset", default=None, help=PRESET_HELP)
    srv.add_argument("--runtime", default=None, help=RUNTIME_HELP)
    srv.add_argument("--replicas", type=int, metavar="N", default=1,
                     help="copies of the model serving requests (default: %(default)s)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on; 0.0.0.0 for every network (default: %(default)s, this machine only)")
    srv.add_argument("--port", type=int, metavar="N", default=8000, help="port to listen on (default: %(default)s)")
    srv.add_argument("--name", default=None, help="model id clients send (default: a folder's name, or the Hub id)")
    srv.add_argument("--device", default="CPU", help=DEVICE_HELP)
    srv.add_argument("--chat-template", default=None, metavar="FILE",
                     help="Jinja chat template file, for tokenizers without one (default: the tokenizer's)")
    srv.add_argument("--max-batch", type=int, metavar="N", default=16,
                     help="most requests in a replica's running batch; later ones wait (default: %(default)s)")
    srv.add_argument("--max-queue", type=int, metavar="N", default=64,
                     help="most requests waiting per replica; more get 429 (default: %(default)s)")
    srv.add_argument("--kv-cache-gb", type=int, metavar="GB", default=None,
                     help="KV-cache pool per replica in GB (default: grown with demand)")
    srv.set_defaults(handler=_serve)


def _add_export(sub: argparse._SubParsersAction) -> None:
    exp = _command(sub, "export", "export a model to a folder: ov_causal IR (--for ir) or OVMS (--for ovms)")
    exp.add_argument("model", help=MODEL_HELP)
    exp.add_argument("out", help="folder to write (new or empty unless --force)")
    exp.add_argument("--for", dest="target", choices=["ir", "ovms"], default="ir",
                     help="ir: an export folder any ov_causal loads; ovms: a repository OpenVINO Model Server serves "
                     "(default: %(default)s)")
    exp.add_argument("--preset", default=None, help=PRESET_HELP)
    exp.add_argument("--force", action="store_true", help="write into a non-empty OUT (same-name files replaced)")
    exp.add_argument("--name", default=None, help="ovms: model name clients send (default: MODEL's last part)")
    exp.add_argument("--device", default="CPU", help="ovms: device OVMS runs the model on (default: %(default)s)")
    exp.add_argument("--cache-size", type=int, metavar="N", default=0,
                     help="ovms: KV cache in GB; 0 grows it as needed (default: %(default)s)")
    exp.add_argument("--max-num-seqs", type=int, metavar="N", default=256,
                     help="ovms: most sequences generated for at once (default: %(default)s)")
    exp.add_argument("--no-prefix-caching", dest="enable_prefix_caching", action="store_false",
                     help="ovms: do not reuse the KV cache of repeated prompt starts")
    exp.add_argument("--plugin-config", default=None, metavar="JSON",
                     help='ovms: OpenVINO properties as JSON, e.g. \'{"KV_CACHE_PRECISION": "u8"}\' (default: none)')
    exp.set_defaults(handler=_export)


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = _command(sub, "bench", "time engines and presets side by side (medians, JSON, chart)")
    bench.add_argument("model", nargs="?", default=None,
                       help="Hub id (org/name) or checkpoint folder (default: a random-weight Llama built locally)")
    bench.add_argument("--presets", default="int8", metavar="NAMES",
                       help="comma-separated presets to measure; auto is allowed (default: %(default)s)")
    bench.add_argument("--prompt-tokens", type=int, metavar="N", default=64,
                       help="prompt length in tokens (default: %(default)s)")
    bench.add_argument("--new-tokens", type=int, metavar="N", default=32,
                       help="tokens generated per call (default: %(default)s)")
    bench.add_argument("--runs", type=int, metavar="N", default=5,
                       help="timed repetitions per measure, after one warm-up; medians reported (default: %(default)s)")
    bench.add_argument("--num-prompts", type=int, metavar="N", default=8,
                       help="prompts in the throughput measure (default: %(default)s)")
    bench.add_argument("--hidden", type=int, metavar="N", default=1024,
                       help="random model: hidden size (default: %(default)s)")
    bench.add_argument("--layers", type=int, metavar="N", default=16,
                       help="random model: layers (default: %(default)s)")
    bench.add_argument("--peak-rss", action="store_true",
                       help="also measure each engine's peak RSS in a fresh process of its own (slower)")
    bench.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON to this file")
    bench.add_argument("--plot", default=None, metavar="FILE",
                       help="also write a PNG chart to this file (needs matplotlib)")
    bench.set_defaults(handler=_bench)


def _parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="ov-causal", description="Run Hugging Face causal LMs on OpenVINO. Without a command: generate.",
        epilog=f"Run 'ov-causal COMMAND --help' for a command's options.\n\n{EXIT_STATUS}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version of ov_causal and exit")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in (_add_generate, _add_cache, _add_fuse_lora, _add_eval_and_tune, _add_serve, _add_export, _add_bench):
        add(sub)
    return parser


def _check_preset(flag: str, name: str, allow_auto: bool) -> None:
    """The API's message (with its did-you-mean) for an unknown name, naming the flag it came with."""
    if name == AUTO:
        if allow_auto:
            return
        raise PresetError(f"{flag}: {AUTO!r} picks one preset when a model is loaded; here name the presets to "
                          "compare, e.g. int8,int4_asym_g128 (or leave the option out for the default list).")
    try:
        get_preset(name)
    except PresetError as exc:
        also = f" {flag} also takes {AUTO!r}." if allow_auto else ""
        raise PresetError(f"{flag}: {exc}{also}") from None


def _check_runtime(name: str) -> None:
    try:
        get_runtime(name)
    except PresetError as exc:
        raise PresetError(f"--runtime: {exc}") from None


def _validate(args: argparse.Namespace) -> None:
    """Names and paths the user typed, checked before anything heavy (torch, optimum, OpenVINO) is imported."""
    if getattr(args, "preset", None) is not None:
        _check_preset("--preset", args.preset, allow_auto=True)
    if getattr(args, "runtime", None) is not None:
        _check_runtime(args.runtime)
    if getattr(args, "presets", None):
        for name in _split(args.presets):
            _check_preset("--presets", name, allow_auto=args.command == "bench")
    if args.command == "tune":
        _percent(args.max_ppl_increase)
    model = args.base if args.command == "fuse-lora" else getattr(args, "model", None)
    if model is not None:
        find_local(model)  # a Hub id (org/name) is left to the API


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",")]


def _generate(args: argparse.Namespace) -> None:
    from ..model.generation import DEMO_PROMPT, generate

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
    from .. import cache

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

    from ..tools.evaluate import DEFAULT_PRESETS, evaluate

    presets = tuple(_split(args.presets)) if args.presets else None
    calibration = Path(args.calibration) if args.calibration else None
    text = Path(args.text) if args.text else None
    common = dict(calibration=calibration, max_tokens=args.max_tokens, window=args.window)
    if args.command == "eval":
        result = evaluate(args.model, presets or DEFAULT_PRESETS, text, **common)
        print(result.table())
    else:
        from ..tools.tune import tune

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

    from ..tools.bench import bench, build_random_checkpoint

    with tempfile.TemporaryDirectory(prefix="ov_causal-bench-") as tmp:
        model = args.model
        if model is None:
            model = build_random_checkpoint(Path(tmp) / "random", args.hidden, args.layers)
            print(f"built a random-weight Llama ({args.hidden} x {args.layers} layers) in {model}", file=sys.stderr)
        report = bench(model, _split(args.presets), prompt_tokens=args.prompt_tokens,
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
    from ..build.lora import fuse_lora

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

    from ..serving.ray_serve import default_name, serve, wait

    template = None
    if args.chat_template is not None:
        try:
            template = Path(args.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise OptionError(f"--chat-template {args.chat_template!r} cannot be read: {exc.strerror}.") from None
    runtime = {} if args.runtime is None else {"runtime": args.runtime}
    url = serve(args.model, preset=args.preset, replicas=args.replicas, host=args.host, port=args.port,
                name=args.name, device=args.device, chat_template=template, max_batch=args.max_batch,
                max_queue=args.max_queue, kv_cache_gb=args.kv_cache_gb, blocking=False, **runtime)
    name = args.name or default_name(args.model)
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

    from ..serving.ovms import export_ir, export_ovms

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
    """Run ``ov-causal`` with ``argv`` (default: the command line); returns the exit status (see EXIT_STATUS)."""
    args = _parser().parse_args(["generate"] if argv is not None and not argv else argv)
    if args.command is None:
        args = _parser().parse_args(["generate"])
    try:
        _validate(args)
        args.handler(args)
    except OVCausalError as exc:
        print(f"ov-causal: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
