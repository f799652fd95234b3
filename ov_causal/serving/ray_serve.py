"""``ov-causal serve``: an OpenAI-compatible HTTP API for one model, on a Ray Serve deployment.

The model is exported once, in this process, through the export cache; every replica then loads the
exported folder into a torch-free ``ServingCore`` (GenAI continuous batching). Ray is imported when
``serve()`` is called, never when this module is imported.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._optional import require
from ..errors import OptionError

APP_NAME = "ov_causal"


@dataclass
class _Server:
    host: str
    port: int
    started_ray: bool
    keep: Any = None  # the driver's model: keeps a temporary export folder (cache=False) alive


_RUNNING: dict[str, _Server] = {}  # APP_NAME -> the server this process started


_SLACK = 64  # requests a replica takes beyond its batch and queue: slow bodies, refusals answered at once


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
    max_queue: int = 64,
    kv_cache_gb: int | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    body_timeout: float = 10.0,
    blocking: bool = True,
    **from_pretrained_kwargs: Any,
) -> str:
    """Serve ``model`` behind the OpenAI HTTP API on Ray Serve and return its base URL (``http://host:port/v1``).

    Args:
        model: Hub id, checkpoint folder or OpenVINO export folder (exported once, through the cache).
        preset: weight compression preset, as in ``AutoModelForCausalLM.from_pretrained``.
        replicas: how many copies of the model serve requests (Ray Serve replicas).
        host, port: where the HTTP API listens (``127.0.0.1``: this machine only).
        name: the model id clients pass as ``model`` (default: a folder's name, or the Hub id).
        device: OpenVINO device of every replica.
        chat_template: Jinja chat template for a tokenizer without one (else chat completions answer 400).
        num_cpus: Ray CPUs reserved per replica (default: this machine's CPUs shared between the replicas, at most 1).
        max_batch: most requests in a replica's running batch (GenAI's ``max_num_seqs``); later ones wait.
        max_queue: most requests waiting per replica; beyond it requests get 429 with ``Retry-After``.
        kv_cache_gb: a replica's KV-cache pool in GB (default: grown by GenAI with demand); a request
            that cannot fit in it gets 400.
        max_body_bytes: largest request body (413 beyond).
        body_timeout: seconds a client has to send its request body (408 beyond).
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
    for key, value in (("max_batch", max_batch), ("max_queue", max_queue), ("max_body_bytes", max_body_bytes)):
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "max_queue" else 1):
            raise OptionError(f"{key}={value!r} is not valid: pass a whole number of at least "
                              f"{0 if key == 'max_queue' else 1}.")
    if not isinstance(body_timeout, (int, float)) or not body_timeout > 0:
        raise OptionError(f"body_timeout={body_timeout!r} is not valid: pass a number of seconds above 0.")
    if from_pretrained_kwargs.get("backend", "auto") == "optimum":
        raise OptionError("backend='optimum' cannot serve: server replicas run OpenVINO GenAI's continuous "
                          "batching. Leave backend out.")
    running = _RUNNING.get(APP_NAME)
    if running is not None and (running.host, running.port) != (host, port):
        raise OptionError(f"a server already runs on {running.host}:{running.port} in this process; call "
                          "ov_causal.serving.ray_serve.shutdown() before serving on another address.")
    if running is None:
        check_port(host, port)
    keep, folder, properties = _prepare(model, preset, from_pretrained_kwargs)
    started_ray = False
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started_ray = True
    if running is None:
        ray_serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        running = _RUNNING[APP_NAME] = _Server(host, port, started_ray)
    running.keep = keep
    cpus = num_cpus if num_cpus is not None else min(1.0, (os.cpu_count() or 1) / replicas)
    # A replica takes more requests than it runs, so that its own queue answers 429 (never an unbounded wait).
    deployment = _deployment(ray_serve).options(num_replicas=replicas, ray_actor_options={"num_cpus": cpus},
                                                max_ongoing_requests=max_batch + max_queue + _SLACK)
    core = {"max_running": max_batch, "max_queue": max_queue, "kv_cache_gb": kv_cache_gb}
    http = {"max_body_bytes": max_body_bytes, "body_timeout": float(body_timeout)}
    ray_serve.run(deployment.bind(str(folder), name or default_name(model), device, properties, chat_template,
                                  core, http), name=APP_NAME, route_prefix="/")
    _await_rollout(ray_serve, replicas)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/v1"
    if blocking:
        wait()
    return url


def _await_rollout(ray_serve: Any, replicas: int, timeout: float = 120.0) -> None:
    """Wait until only the new replicas run: a redeploy's old replicas drain after ``run`` returns, and a
    request routed to one that is stopping fails in Ray's proxy with a bare 500."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = ray_serve.status().applications.get(APP_NAME)
        deployment = app.deployments.get("OVCausalServer") if app is not None else None
        states = {str(getattr(k, "value", k)): n for k, n in (deployment.replica_states if deployment else {}).items()
                  if n}
        if states == {"RUNNING": replicas}:
            return
        time.sleep(0.2)


def default_name(model: str | os.PathLike[str]) -> str:
    """The model id a server answers to by default: a local folder's name, else the Hub id as given."""
    path = Path(model)
    return path.resolve().name if path.exists() else os.fspath(model)


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


def _prepare(model: str | os.PathLike[str], preset: str | None,
             kwargs: dict[str, Any]) -> tuple[Any, Path, dict[str, str]]:
    """Export (or find in the cache) here, so a bad model fails before Ray starts and replicas only load.

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


def _deployment(ray_serve: Any) -> Any:
    """The Ray Serve deployment class (built here so that importing this module does not import Ray)."""

    class OVCausalServer:
        """One replica: the serving core on the export folder, behind the OpenAI API app. No torch here."""

        def __init__(self, folder: str, name: str, device: str, properties: dict[str, str],
                     chat_template: str | None, core: dict[str, Any], http: dict[str, Any]) -> None:
            # Absolute imports: Ray pickles this class by value, without the package context.
            from ov_causal.serving.completer import Completer
            from ov_causal.serving.core import ServingCore

            self.completer = Completer(ServingCore(folder, device=device, properties=properties,
                                                   chat_template=chat_template, **core), name)
            self.http = http
            self.replica = _replica_label(ray_serve.get_replica_context())

        def __serve_build_asgi_app__(self) -> Any:
            from ov_causal.serving.openai_api import build_app

            return build_app(self.completer, self.replica, **self.http)

        def check_health(self) -> None:
            if not self.completer.core.alive:
                raise RuntimeError(f"the serving core stopped: {self.completer.core.failure!r}")

        def __del__(self) -> None:
            completer = getattr(self, "completer", None)
            if completer is not None:
                completer.core.close()

    return ray_serve.deployment(name="OVCausalServer")(ray_serve.ingress()(OVCausalServer))


def _replica_label(context: Any) -> str:
    """An opaque replica index for the response header (no process id, no host)."""
    rank = getattr(context, "rank", None)
    index = getattr(rank, "rank", rank)
    return f"replica-{index}" if isinstance(index, int) else f"replica-{abs(hash(context.replica_tag)) % 10_000}"
