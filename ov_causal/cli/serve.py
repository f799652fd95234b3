"""``ov-causal serve``: an OpenAI-compatible HTTP API on Ray Serve (or in this process with --no-ray), with
``serving.ray_serve.serve``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OptionError
from ..serving.ray_serve import default_name, serve, wait
from .common import (
    DEVICE_HELP,
    EXIT_FAILED,
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
    """Add ``serve`` and its flags (every flag a keyword of ``serve()``, with its default)."""
    srv = command(sub, "serve", "serve a model behind an OpenAI-compatible HTTP API on Ray Serve", run, check)
    srv.add_argument("model", help=MODEL_HELP)
    srv.add_argument("--preset", default=None, help=PRESET_HELP)
    srv.add_argument("--runtime", default=None, help=RUNTIME_HELP)
    srv.add_argument("--replicas", type=int, metavar="N", default=default_of(serve, "replicas"),
                     help="copies of the model serving requests (default: %(default)s)")
    srv.add_argument("--host", default=default_of(serve, "host"),
                     help="address to listen on; 0.0.0.0 for every network (default: %(default)s, this machine only)")
    srv.add_argument("--port", type=int, metavar="N", default=default_of(serve, "port"),
                     help="port to listen on (default: %(default)s)")
    srv.add_argument("--name", default=None, help="model id clients send (default: a folder's name, or the Hub id)")
    srv.add_argument("--device", default=default_of(serve, "device"), help=DEVICE_HELP)
    srv.add_argument("--chat-template", default=None, metavar="FILE",
                     help="Jinja chat template file, for tokenizers without one (default: the tokenizer's)")
    srv.add_argument("--tool-parser", default=None, metavar="FORMAT",
                     help="tool call format: hermes, llama3_json, llama3_pythonic or mistral (default: from the chat "
                          "template, else hermes)")
    srv.add_argument("--max-batch", type=int, metavar="N", default=default_of(serve, "max_batch"),
                     help="most requests in a replica's running batch; later ones wait (default: %(default)s)")
    srv.add_argument("--max-queue", type=int, metavar="N", default=default_of(serve, "max_queue"),
                     help="most requests waiting per replica; more get 429 (default: %(default)s)")
    srv.add_argument("--no-ray", dest="ray", action="store_false", default=default_of(serve, "ray"),
                     help="serve one replica in this process with uvicorn, without Ray Serve (lighter, no proxy hop; "
                          "an export folder or a cached export is served without importing torch)")
    srv.add_argument("--grace", type=float, metavar="SECONDS", default=default_of(serve, "grace"),
                     help="at Ctrl-C or SIGTERM, take no new requests and give those in flight this long to finish; "
                          "the rest then end with an error, and a second signal exits at once (default: %(default)s)")
    srv.add_argument("--lora", action="append", metavar="NAME=FOLDER", default=None,
                     help="serve a PEFT LoRA adapter beside the base, picked by requests whose model is NAME; "
                          "repeat for more (checked at start; adapters take turns on the engine)")
    srv.add_argument("--kv-cache-gb", type=int, metavar="GB", default=None,
                     help="KV-cache pool per replica in GB (default: grown with demand)")


def read_template(path: str | None) -> str | None:
    """The text of --chat-template FILE (None without one); an unreadable file is an OptionError."""
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise OptionError(f"--chat-template {path!r} cannot be read: {exc.strerror}.") from None


def lora_flags(flags: list[str]) -> dict[str, str]:
    """``--lora NAME=FOLDER`` flags as ``serve(lora=)``'s ``{name: folder}``."""
    adapters: dict[str, str] = {}
    for flag in flags:
        name, sep, folder = flag.partition("=")
        if not sep or not name.strip() or not folder.strip() or name in adapters:
            raise OptionError(f"--lora {flag!r}: pass NAME=FOLDER, one distinct NAME per adapter (the model id "
                              "clients send), e.g. --lora sql=adapters/sql.")
        adapters[name.strip()] = folder.strip()
    return adapters


def run(args: argparse.Namespace) -> int:
    """Start the deployment, print how to query it, and wait until Ctrl-C or SIGTERM (then stop gracefully)."""
    options = keywords(args, serve)
    options["chat_template"] = read_template(args.chat_template)
    if args.lora:
        options["lora"] = lora_flags(args.lora)
    if args.runtime is not None:  # a from_pretrained keyword, which serve() passes on
        options["runtime"] = args.runtime
    url = serve(**options, blocking=False)
    name = args.name or default_name(args.model)
    where = f"{args.replicas} replica{'s' if args.replicas > 1 else ''}" if args.ray else "in this process, no Ray"
    print(f"serving {name!r} at {url} ({where}); Ctrl-C stops.\n"
          "Try it:\n"
          "  from openai import OpenAI\n"
          f"  client = OpenAI(base_url={url!r}, api_key='none')\n"
          f"  print(client.completions.create(model={name!r}, prompt='def add(a, b):', max_tokens=32)"
          ".choices[0].text)", flush=True)
    return EXIT_OK if wait() else EXIT_FAILED
