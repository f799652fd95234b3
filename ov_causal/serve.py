"""``ov-causal serve``: an OpenAI-compatible HTTP API for one model, on a Ray Serve deployment.

The model is exported once, in this process, through the export cache; every replica then loads the
exported folder. Ray is imported when ``serve()`` is called, never when this module is imported.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import OptionError

APP_NAME = "ov_causal"
# from_pretrained keywords that only change how a replica runs the folder (not what is exported).
_RUNTIME_KEYWORDS = ("runtime", "ov_config", "dq_group_size", "backend")


@dataclass
class _Server:
    host: str
    port: int
    started_ray: bool
    keep: Any = None  # the driver's model: keeps a temporary export folder (cache=False) alive


_RUNNING: dict[str, _Server] = {}  # APP_NAME -> the server this process started


MAX_ONGOING = 16  # per replica; the Completer batches the requests that wait


def serve(
    model: str | os.PathLike[str],
    *,
    preset: str | None = None,
    replicas: int = 1,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    device: str = "CPU",
    chat_template: str | None = None,
    num_cpus: float | None = None,
    max_batch: int = 16,
    blocking: bool = True,
    **from_pretrained_kwargs: Any,
) -> str:
    """Serve ``model`` behind the OpenAI HTTP API on Ray Serve and return its base URL (``http://host:port/v1``).

    Args:
        model: Hub id, checkpoint folder or OpenVINO export folder (exported once, through the cache).
        preset: weight compression preset, as in ``AutoModelForCausalLM.from_pretrained``.
        replicas: how many copies of the model serve requests (Ray Serve replicas).
        host, port: where the HTTP API listens (``127.0.0.1``: this machine only).
        name: the model id clients pass as ``model`` (default: the model argument as given).
        device: OpenVINO device of every replica.
        chat_template: Jinja chat template for a tokenizer without one (else chat completions answer 400).
        num_cpus: Ray CPUs reserved per replica (default: this machine's CPUs shared between the replicas, at most 1).
        max_batch: most waiting requests a replica serves with one generate() call (1: one request at a time).
        blocking: wait until Ctrl-C, then shut down; False returns at once (call ``shutdown()`` later).
        **from_pretrained_kwargs: further ``AutoModelForCausalLM.from_pretrained`` keywords.

    Example:
        >>> url = serve("org/model", preset="int8", blocking=False)
        >>> openai.OpenAI(base_url=url, api_key="none").completions.create(model="org/model", prompt="Hi")
    """
    ray = require("ray", "ray")
    ray_serve = require("ray.serve", "ray")
    require("fastapi", "ray")
    if not isinstance(replicas, int) or replicas < 1:
        raise OptionError(f"replicas={replicas!r} is not valid: pass a whole number of at least 1.")
    if not isinstance(max_batch, int) or max_batch < 1:
        raise OptionError(f"max_batch={max_batch!r} is not valid: pass a whole number of at least 1.")
    running = _RUNNING.get(APP_NAME)
    if running is not None and (running.host, running.port) != (host, port):
        raise OptionError(f"a server already runs on {running.host}:{running.port} in this process; call "
                          "ov_causal.serve.shutdown() before serving on another address.")
    if running is None:
        check_port(host, port)
    keep, folder = _prepare(model, preset, from_pretrained_kwargs)
    options = {k: from_pretrained_kwargs[k] for k in _RUNTIME_KEYWORDS if k in from_pretrained_kwargs}
    started_ray = False
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started_ray = True
    if running is None:
        ray_serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        running = _RUNNING[APP_NAME] = _Server(host, port, started_ray)
    running.keep = keep
    cpus = num_cpus if num_cpus is not None else min(1.0, (os.cpu_count() or 1) / replicas)
    # Requests a replica takes at once: those waiting share its next generate() call (see Completer).
    deployment = _deployment(ray_serve).options(num_replicas=replicas, ray_actor_options={"num_cpus": cpus},
                                                max_ongoing_requests=max(MAX_ONGOING, max_batch))
    served = name or os.fspath(model)
    ray_serve.run(deployment.bind(str(folder), served, device, options, chat_template, max_batch), name=APP_NAME,
                  route_prefix="/")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/v1"
    if blocking:
        wait()
    return url


def wait() -> None:
    """Block until Ctrl-C, then shut the server down."""
    try:
        while _RUNNING:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown()


def shutdown() -> None:
    """Stop the server started by ``serve()`` (and Ray, if ``serve()`` started it)."""
    running = _RUNNING.pop(APP_NAME, None)
    if running is None:
        return
    import ray
    from ray import serve as ray_serve

    ray_serve.shutdown()
    if running.started_ray:
        ray.shutdown()


def check_port(host: str, port: int) -> None:
    """Raise OptionError when ``host:port`` cannot be listened on (a port in use, a host not of this machine)."""
    if not isinstance(port, int) or not 0 < port < 65536:
        raise OptionError(f"port={port!r} is not valid: pass a number from 1 to 65535.")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise OptionError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Another program may use "
                              f"port {port}: pick a free one with --port (port= in Python).") from None


def _prepare(model: str | os.PathLike[str], preset: str | None, kwargs: dict[str, Any]) -> tuple[Any, Path]:
    """Export (or find in the cache) here, so a bad model fails before Ray starts and replicas only load."""
    from .engines import tokenizers_ready
    from .modeling import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(model, preset=preset, compile=False, **kwargs)
    folder = Path(loaded.model_save_dir)
    if loaded.tokenizer is None:
        raise OptionError(f"{os.fspath(model)!r} has no tokenizer beside it; the server needs one to read prompts.")
    tokenizers_ready(folder, loaded.tokenizer)  # GenAI's tokenizer files, converted once rather than per replica
    return (loaded if loaded._ov_workdir is not None else None), folder


def _deployment(ray_serve: Any) -> Any:
    """The Ray Serve deployment class (built here so that importing this module does not import Ray)."""

    class OVCausalServer:
        """One replica: the model loaded from the export folder, behind the OpenAI API app."""

        def __init__(self, folder: str, name: str, device: str, options: dict[str, Any],
                      chat_template: str | None, max_batch: int) -> None:
            # Absolute imports: Ray pickles this class by value, without the package context.
            from ov_causal.completer import Completer
            from ov_causal.modeling import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(folder, device=device, **options)
            self.completer = Completer(model, name, chat_template, max_batch=max_batch)
            context = ray_serve.get_replica_context()
            self.replica = f"{context.replica_tag} pid={os.getpid()}"

        def __serve_build_asgi_app__(self) -> Any:
            from ov_causal.openai_api import build_app

            return build_app(self.completer, self.replica)

    return ray_serve.deployment(name="OVCausalServer")(ray_serve.ingress()(OVCausalServer))
