"""What both servers (Ray Serve and the single-process one) do before serving: check the options and the
address, name the model, and find (``load_folder``, through ``model.plan.plan_load``) or export its folder."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from ..errors import OptionError


def check_options(max_batch: int, max_queue: int, max_body_bytes: int, body_timeout: float,
                  from_pretrained_kwargs: dict[str, Any]) -> None:
    """Raise OptionError for a serving option out of range, or a backend that cannot serve."""
    for key, value in (("max_batch", max_batch), ("max_queue", max_queue), ("max_body_bytes", max_body_bytes)):
        least = 0 if key == "max_queue" else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise OptionError(f"{key}={value!r} is not valid: pass a whole number of at least {least}.")
    if not isinstance(body_timeout, (int, float)) or not body_timeout > 0:
        raise OptionError(f"body_timeout={body_timeout!r} is not valid: pass a number of seconds above 0.")
    if from_pretrained_kwargs.get("backend", "auto") == "optimum":
        raise OptionError("backend='optimum' cannot serve: server replicas run OpenVINO GenAI's continuous "
                          "batching. Leave backend out.")


def check_grace(grace: float) -> float:
    """``grace`` as seconds; OptionError unless it is a number of at least 0."""
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < float("inf"):
        raise OptionError(f"grace={grace!r} is not valid: pass the seconds (0 or more) that requests in flight "
                          "get to finish when the server stops.")
    return float(grace)


def default_name(model: str | os.PathLike[str]) -> str:
    """The model id a server answers to by default: a local folder's name, else the Hub id as given."""
    path = Path(model)
    return path.resolve().name if path.exists() else os.fspath(model)


def base_url(host: str, port: int) -> str:
    """The API's base URL for clients on this machine (``0.0.0.0`` and ``::`` are reached on loopback)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '', '::') else host}:{port}/v1"


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening); OptionError when that address cannot be used."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise OptionError(f"port={port!r} is not valid: pass a number from 1 to 65535.")
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
    from ..model.engines import tokenizers_ready
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

    plan = plan_load(model, preset=preset, device=device, **kwargs)
    if plan.folder is not None:
        return None, plan.folder, plan.properties, plan.device
    keep, folder, properties = prepare(model, preset, kwargs)
    return keep, folder, properties, device
