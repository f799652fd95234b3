"""What both servers (Ray Serve and the single-process one) do before serving: check the address, name the
model, find (``load_folder``, through ``model.plan.plan_load``) or export its folder, and build a replica's
serving core and app from the ``ServeOptions`` (``new_core``, ``new_app``)."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import OptionError
from .options import ServeOptions


def default_name(model: str | os.PathLike[str]) -> str:
    """The model id a server answers to by default: a local folder's name, else the Hub id as given."""
    path = Path(model)
    return path.resolve().name if path.exists() else os.fspath(model)


def base_url(host: str, port: int) -> str:
    """The API's base URL for clients on this machine (``0.0.0.0`` and ``::`` are reached on loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}/v1"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening); OptionError when that address cannot be used."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OptionError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another program may use "
                          f"port {port}: pick a free one with --port (port= in Python).") from None
    return sock


def check_port(host: str, port: int) -> None:
    """Raise OptionError when ``host:port`` cannot be listened on (a port in use, a host not of this machine)."""
    listen(host, port).close()


def prepare(model: str | os.PathLike[str], preset: str | None,
            kwargs: dict[str, Any]) -> tuple[Any, Path, dict[str, str]]:
    """Export ``model`` (or find it in the cache) through ``AutoModelForCausalLM``: imports torch and optimum.

    Returns what keeps a temporary folder alive, the folder, and the OpenVINO properties of the runtime.
    """
    from ..model.backends import tokenizers_ready
    from ..model.modeling import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(model, preset=preset, compile=False, **kwargs)
    folder = Path(loaded.model_save_dir)
    if loaded.tokenizer is None:
        raise OptionError(f"{os.fspath(model)!r} has no tokenizer beside it; the server needs one to read prompts.")
    if not tokenizers_ready(folder, loaded.tokenizer):  # converted once here rather than per replica
        raise OptionError(f"{os.fspath(model)!r}: its tokenizer cannot be converted to OpenVINO, which the server's "
                          "GenAI engine needs.")
    properties = {k: str(v) for k, v in dict(loaded.ov_config).items()}
    return (loaded if loaded.is_temporary else None), folder, properties


def load_folder(model: str | os.PathLike[str], preset: str | None, device: str,
                kwargs: dict[str, Any]) -> tuple[Any, Path, dict[str, str], str]:
    """(what keeps a temporary folder alive, folder, OpenVINO properties, device) for ``model``.

    A ready folder (``model.plan.plan_load``) is served without torch; anything else is exported through
    ``AutoModelForCausalLM`` (``prepare``).
    """
    from ..model.plan import plan_load

    if kwargs.get("backend", "auto") == "optimum":
        raise OptionError("backend='optimum' cannot serve: server replicas run OpenVINO GenAI's continuous "
                          "batching. Leave backend out.")
    plan = plan_load(model, preset=preset, device=device, **kwargs)
    if plan.folder is not None:
        return None, plan.folder, plan.properties, plan.device
    keep, folder, properties = prepare(model, preset, kwargs)
    return keep, folder, properties, device


def settle(options: ServeOptions, model: str | os.PathLike[str], device: str) -> ServeOptions:
    """``options`` with the device ``load_folder`` chose, and the name defaulted to ``default_name(model)``."""
    return replace(options, device=device, name=options.name or default_name(model))  # checked again: lora names


def new_core(folder: str | os.PathLike[str], properties: dict[str, str], options: ServeOptions) -> Any:
    """A replica's ``ServingCore`` on ``folder`` (the one place ``max_batch`` becomes the core's ``max_running``)."""
    from .adapters import load_adapters
    from .scheduler import ServingCore

    adapters = load_adapters(Path(folder), options.lora)
    return ServingCore(folder, device=options.device, properties=properties, chat_template=options.chat_template,
                       max_running=options.max_batch, max_queue=options.max_queue, kv_cache_gb=options.kv_cache_gb,
                       adapters=adapters)


def new_app(core: Any, replica: str, options: ServeOptions) -> Any:
    """A replica's OpenAI API app on ``core``, answering to ``options.name`` (set by ``serve()``)."""
    from .completer import Completer
    from .openai_api import build_app

    completer = Completer(core, str(options.name), options.tool_parser)
    return build_app(completer, replica, max_body_bytes=options.max_body_bytes,
                     body_timeout=float(options.body_timeout))
