"""``ov-causal serve``: an OpenAI-compatible HTTP API for one model, on a Ray Serve deployment (or, with
``ray=False``, one replica in this process on uvicorn: ``serving.direct``).

The model is exported once, in this process, through the export cache; every replica then loads the
exported folder into a torch-free ``ServingCore`` (GenAI continuous batching). Ray is imported when
``serve()`` is called, never when this module is imported.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from .._optional import require
from ..errors import OptionError
from .adapters import load_adapters
from .launch import base_url, check_port, default_name, load_folder, settle
from .options import ServeOptions, check_grace, served_lora
from .stop import end_processes, on_signals, ray_processes

__all__ = ["APP_NAME", "check_port", "default_name", "serve", "shutdown", "wait"]

APP_NAME = "ov_causal"


@dataclass
class _Server:
    host: str
    port: int
    started_ray: bool
    grace: float = ServeOptions.grace  # seconds requests in flight get to finish when the server stops
    keep: Any = None  # the driver's model: keeps a temporary export folder (cache=False) alive
    direct: Any = None  # the single-process server (serving.direct.DirectServer) when ray=False


_RUNNING: dict[str, _Server] = {}  # APP_NAME -> the server this process started


_DEFAULTS = ServeOptions  # serve()'s defaults are the options' (the class attributes of its fields)
_SLACK = 64  # requests a replica takes beyond its batch and queue: slow bodies, refusals answered at once


def serve(
    model: str | os.PathLike[str],
    *,
    preset: str | None = _DEFAULTS.preset,
    replicas: int = _DEFAULTS.replicas,
    host: str = _DEFAULTS.host,
    port: int = _DEFAULTS.port,
    name: str | None = _DEFAULTS.name,
    device: str = _DEFAULTS.device,
    chat_template: str | None = _DEFAULTS.chat_template,
    num_cpus: float | None = _DEFAULTS.num_cpus,
    max_batch: int = _DEFAULTS.max_batch,
    max_queue: int = _DEFAULTS.max_queue,
    kv_cache_gb: int | None = _DEFAULTS.kv_cache_gb,
    max_body_bytes: int = _DEFAULTS.max_body_bytes,
    body_timeout: float = _DEFAULTS.body_timeout,
    grace: float = _DEFAULTS.grace,
    blocking: bool = True,
    ray: bool = _DEFAULTS.ray,
    lora: Any = _DEFAULTS.lora,
    tool_parser: str | None = _DEFAULTS.tool_parser,
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
        grace: seconds the requests in flight get to finish when the server stops (Ctrl-C, SIGTERM,
            ``shutdown()``), taking no new ones; then, with ``ray=False``, those left end with a 503 error (a
            stream: an error event, then ``[DONE]``), and on Ray the replicas are stopped (Ray Serve's
            ``graceful_shutdown_timeout_s``). A second Ctrl-C or SIGTERM exits at once.
        blocking: wait until Ctrl-C or SIGTERM, then shut down; False returns at once (call ``shutdown()`` later).
        ray: False serves one replica in this process with uvicorn, without Ray (lighter and faster: no
            proxy hop). On a ready folder (an export folder, or a checkpoint already in the export cache, with
            only the keywords of ``model.plan.READY_KEYWORDS``) the process never imports torch; any other model is
            exported here first through ``AutoModelForCausalLM``, and torch then stays imported.
        lora: LoRA adapters served beside the base, ``{name: PEFT adapter folder}``: a request whose ``model`` is
            a name runs with that adapter (the base's name, or none: the base). Each is checked against the base at
            start (LoraError before serving). Requests for different adapters take turns on the engine (one
            adapter at a time; see ``serving.adapters``). A folder or ``{folder: weight}`` instead is
            ``from_pretrained``'s ``lora=``: fused into the export, served as the base.
        tool_parser: the format tool calls are written in and read from: ``hermes``, ``llama3_json``,
            ``llama3_pythonic`` or ``mistral`` (default: picked from the chat template; ``hermes`` when it does
            not say, see docs/agents.md).
        **from_pretrained_kwargs: further ``AutoModelForCausalLM.from_pretrained`` keywords.

    Example:
        >>> url = serve("org/model", preset="int8", blocking=False)
        >>> openai.OpenAI(base_url=url, api_key="none").completions.create(model="org/model", prompt="Hi")
    """
    served, fused = served_lora(lora)
    if fused is not None:
        from_pretrained_kwargs["lora"] = fused
    options = ServeOptions(preset=preset, replicas=replicas, host=host, port=port, name=name, device=device,
                           chat_template=chat_template, num_cpus=num_cpus, max_batch=max_batch, max_queue=max_queue,
                           kv_cache_gb=kv_cache_gb, max_body_bytes=max_body_bytes, body_timeout=body_timeout,
                           grace=grace, ray=ray, lora=served, tool_parser=tool_parser)
    url = (_serve_ray if ray else _serve_direct)(model, options, from_pretrained_kwargs)
    if blocking:
        wait()
    return url


def _serve_ray(model: str | os.PathLike[str], options: ServeOptions, kwargs: dict[str, Any]) -> str:
    """``serve()`` on Ray Serve: export (or find) the folder here, then deploy ``options.replicas`` replicas."""
    instead = (' (it holds the serve extra too). Or serve in this process without Ray: ray=False (ov-causal serve '
               '--no-ray), which needs only pip install "ov_causal[serve]".')
    ray_module = require("ray", "ray", instead)
    ray_serve = require("ray.serve", "ray", instead)
    require("fastapi", "ray")
    running = _RUNNING.get(APP_NAME)
    address = (options.host, options.port)
    if running is not None and running.direct is not None:
        raise OptionError(f"a single-process server (ray=False) already runs on {running.host}:{running.port} in "
                          "this process; call ov_causal.serving.ray_serve.shutdown() before serving on Ray.")
    if running is not None and (running.host, running.port) != address:
        raise OptionError(f"a server already runs on {running.host}:{running.port} in this process; call "
                          "ov_causal.serving.ray_serve.shutdown() before serving on another address.")
    if running is None:
        check_port(*address)
    keep, folder, properties, device = load_folder(model, options.preset, options.device, kwargs)
    options = settle(options, model, device)
    load_adapters(folder, options.lora)  # a bad adapter fails here, before any replica starts
    started_ray = False
    if not ray_module.is_initialized():
        ray_module.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        started_ray = True
    if running is None:
        ray_serve.start(http_options={"host": options.host, "port": options.port},
                        logging_config={"log_level": "WARNING"})
        running = _RUNNING[APP_NAME] = _Server(options.host, options.port, started_ray)
    running.keep, running.grace = keep, float(options.grace)
    ray_serve.run(_deployment(ray_serve, options).bind(str(folder), properties, options), name=APP_NAME,
                  route_prefix="/")
    _await_rollout(ray_serve, options.replicas)
    return base_url(options.host, options.port)


def _serve_direct(model: str | os.PathLike[str], options: ServeOptions, kwargs: dict[str, Any]) -> str:
    """``serve(..., ray=False)``: one replica in this process on uvicorn (``serving.direct``)."""
    from .direct import start

    running = _RUNNING.get(APP_NAME)
    if running is not None:
        raise OptionError(f"a server already runs on {running.host}:{running.port} in this process; call "
                          "ov_causal.serving.ray_serve.shutdown() before starting another.")
    server = start(model, options, kwargs)
    _RUNNING[APP_NAME] = _Server(options.host, options.port, started_ray=False, grace=float(options.grace),
                                 keep=server.keep, direct=server)
    return server.url


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


def wait() -> bool:
    """Block until Ctrl-C or SIGTERM, then stop as ``shutdown()`` does; a second signal exits at once.

    Returns False when the server stopped on its own instead (a single-process server whose engine stalled).
    """
    stop = threading.Event()
    restore = on_signals(stop, partial(_exit_now, _RUNNING.get(APP_NAME)))
    try:
        while _RUNNING and _serving(_RUNNING.get(APP_NAME)) and not stop.wait(1):
            pass
    except KeyboardInterrupt:  # Ctrl-C where the handlers could not be set (wait() off the main thread)
        stop.set()
    finally:
        if stop.is_set():  # else the HTTP thread stopped on its own: nothing to announce
            _announce(_RUNNING.get(APP_NAME))
        try:
            shutdown()
        finally:
            restore()
    return stop.is_set()


def _exit_now(running: _Server | None) -> None:
    """At a second signal: end the Ray processes ``serve()`` started (the process then exits at once)."""
    if running is not None and running.started_ray:
        end_processes(ray_processes(), timeout=1.0)


def _announce(running: _Server | None) -> None:
    """The line a stopping server prints: what it finishes, for how long, and how to exit at once."""
    if running is None:
        return
    count = f"{running.direct.in_flight} requests" if running.direct is not None else "the requests"
    print(f"stopping: finishing {count} in flight, up to {running.grace:g} s; signal again to exit now.",
          file=sys.stderr, flush=True)


def _serving(running: _Server | None) -> bool:
    """False once a single-process server's HTTP thread has stopped (it failed): waiting is then over."""
    return running is None or running.direct is None or running.direct.thread.is_alive()


def shutdown(grace: float | None = None) -> None:
    """Stop the server started by ``serve()`` (and Ray, if ``serve()`` started it); its port is then free.

    It takes no new requests and gives those in flight ``grace`` seconds to finish (default: ``serve()``'s
    ``grace``; on Ray always ``serve()``'s, set on the deployment). Then the single-process server ends the rest
    with a 503 error (a stream: an error event, then ``[DONE]``); Ray Serve stops the replicas.
    """
    running = _RUNNING.pop(APP_NAME, None)
    if running is None:
        return
    grace = running.grace if grace is None else check_grace(grace)
    if running.direct is not None:
        running.direct.stop(grace)
        return
    _stop_ray(running)


def _stop_ray(running: _Server) -> None:
    """Drain and delete the app while the proxy still streams, then stop Serve, and Ray with its processes.

    Ray Serve gives each replica its ``graceful_shutdown_timeout_s`` (``grace``), then kills it.
    """
    import ray
    from ray import serve as ray_serve

    children = ray_processes() if running.started_ray else []
    try:
        ray_serve.delete(APP_NAME)
    finally:
        ray_serve.shutdown()
        if running.started_ray:
            ray.shutdown()
            end_processes(children)


def _deployment(ray_serve: Any, options: ServeOptions) -> Any:
    """The Ray Serve deployment (built here so that importing this module does not import Ray).

    A replica takes more requests than it runs, so that its own queue answers 429 (never an unbounded wait). At a
    stop, a replica takes no new requests and gets ``grace`` s for those it has (polled every 0.1 s).
    """

    class OVCausalServer:
        """One replica: the serving core on the export folder, behind the OpenAI API app. No torch here."""

        def __init__(self, folder: str, properties: dict[str, str], options: ServeOptions) -> None:
            # Absolute imports: Ray pickles this class by value, without the package context.
            from ov_causal.serving.launch import new_core

            self.options = options
            self.core = new_core(folder, properties, options)
            self.replica = _replica_label(ray_serve.get_replica_context())

        def __serve_build_asgi_app__(self) -> Any:
            from ov_causal.serving.launch import new_app

            return new_app(self.core, self.replica, self.options)

        def check_health(self) -> None:
            if not self.core.alive or self.core.stalled:
                raise RuntimeError(f"the serving core stopped: {self.core.failure!r}")

        def __del__(self) -> None:
            core = getattr(self, "core", None)
            if core is not None:
                core.close()

    cpus = options.num_cpus if options.num_cpus is not None else min(1.0, (os.cpu_count() or 1) / options.replicas)
    deployment = ray_serve.deployment(name="OVCausalServer")(ray_serve.ingress()(OVCausalServer))
    return deployment.options(num_replicas=options.replicas, ray_actor_options={"num_cpus": cpus},
                              max_ongoing_requests=options.max_batch + options.max_queue + _SLACK,
                              graceful_shutdown_timeout_s=float(options.grace), graceful_shutdown_wait_loop_s=0.1)


def _replica_label(context: Any) -> str:
    """An opaque replica index for the response header (no process id, no host)."""
    rank = getattr(context, "rank", None)
    index = getattr(rank, "rank", rank)
    return f"replica-{index}" if isinstance(index, int) else f"replica-{abs(hash(context.replica_tag)) % 10_000}"
