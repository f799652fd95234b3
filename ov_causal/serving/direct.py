"""The single-process server: one serving core and the OpenAI API app on uvicorn in a thread, no Ray.

A replica of ``serve(..., ray=False)``. On a ready folder (an export folder, or a checkpoint whose export is
in the cache) the process imports neither torch nor transformers nor optimum: only GenAI, the OpenVINO
tokenizers, FastAPI and uvicorn. Anything else is exported first through ``AutoModelForCausalLM`` (then
torch stays imported in the process).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import partial
from typing import Any

from .._optional import require
from ..errors import ServerError
from .launch import base_url, listen, load_folder, new_app, new_core, settle
from .options import ServeOptions
from .scheduler import ServingCore
from .stop import wait_idle

REPLICA = "replica-0"
# What this server imports beyond the core dependencies: the 'serve' extra (pyproject.toml), which has no Ray.
SERVE_MODULES = ("uvicorn", "fastapi", "starlette", "pydantic", "prometheus_client")
CLOSE_SECONDS = 5  # after the grace period: for the last bytes (error events, [DONE]) to reach the clients


@dataclass
class DirectServer:
    """A running single-process server: its uvicorn server and thread, and the core behind it."""

    url: str
    server: Any  # uvicorn.Server
    thread: threading.Thread
    core: ServingCore
    keep: Any = None  # a temporary export folder's model (cache=False), kept alive while serving

    def stop(self, grace: float = 0.0) -> int:
        """Stop accepting, give the requests in flight up to ``grace`` s to finish, end the rest, then stop.

        The listening socket closes at once (and idle keep-alive connections); requests left at the end of the
        grace period end with a 503 error (a stream: an error event, then ``[DONE]``). Returns how many were left.
        """
        self.server.config.timeout_graceful_shutdown = grace + CLOSE_SECONDS  # then uvicorn cancels what is open
        self.server.should_exit = True  # uvicorn closes the listening socket at its next tick (0.1 s)
        left = wait_idle(lambda: self.in_flight, grace)
        self.core.close()
        self.thread.join(timeout=CLOSE_SECONDS + 30)
        return left

    @property
    def in_flight(self) -> int:
        """Requests running or waiting in the core."""
        return self.core.running + self.core.queued


def start(model: str | os.PathLike[str], options: ServeOptions, from_pretrained_kwargs: dict[str, Any],
          startup_timeout: float = 60.0) -> DirectServer:
    """Load ``model`` into a serving core and serve it on ``options.host:options.port`` from a daemon thread.

    Returns once ``/health`` answers. The port is taken before the model loads, so a busy port fails first.
    ``options.name`` defaults to ``default_name(model)``.
    """
    for module in SERVE_MODULES[1:]:
        require(module, "serve")
    uvicorn = require(SERVE_MODULES[0], "serve")
    sock = listen(options.host, options.port)
    core = None
    try:
        keep, folder, properties, device = load_folder(model, options.preset, options.device, from_pretrained_kwargs)
        options = settle(options, model, device)
        core = new_core(folder, properties, options)
        app = new_app(core, REPLICA, options)
    except BaseException:
        if core is not None:
            core.close()
        sock.close()
        raise
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=CLOSE_SECONDS)
    server = uvicorn.Server(config)
    core.on_stall = partial(_stalled, server)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="ov_causal-http", daemon=True)
    thread.start()
    running = DirectServer(base_url(options.host, options.port), server, thread, core, keep)
    try:
        _await_health(running, startup_timeout)
    except BaseException:
        running.stop()
        sock.close()
        raise
    return running


def _stalled(server: Any) -> None:
    """The engine stopped advancing (its requests ended with 503): stop serving, so that the process ends and
    its supervisor starts it again, rather than staying up answering 503."""
    print("ov_causal: the engine stopped advancing; stopping this server (exit status 1) so that it can be started "
          "again.", file=sys.stderr, flush=True)
    server.should_exit = True


def _await_health(running: DirectServer, timeout: float) -> None:
    """Wait until ``/health`` answers 200; ServerError when the HTTP thread stops or time runs out."""
    health = running.url.removesuffix("/v1") + "/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running.thread.is_alive():
            raise ServerError(f"the HTTP server for {running.url} stopped while starting; uvicorn's log above "
                              "says why.")
        if running.server.started:
            try:
                with opener.open(health, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    raise ServerError(f"the server at {running.url} did not answer {health} within {timeout:g} s.")
