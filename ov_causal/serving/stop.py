"""Stopping a server gracefully: SIGINT/SIGTERM handlers (a second signal exits at once), the wait for the
requests in flight, and the end of the processes Ray leaves behind. psutil is imported only when Ray runs."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_POLL = 0.05  # seconds between looks at the requests in flight


def on_signals(stop: threading.Event, at_once: Callable[[], None]) -> Callable[[], None]:
    """Make SIGINT and SIGTERM set ``stop``; a second one calls ``at_once`` and exits (128 + the signal).

    Returns what restores the previous handlers (a no-op off the main thread, where none can be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, _frame: Any) -> None:
        if not stop.is_set():
            stop.set()
            return
        print(f"{signal.Signals(signum).name} again: exiting now.", file=sys.stderr, flush=True)
        at_once()
        os._exit(128 + signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


def wait_idle(in_flight: Callable[[], int], timeout: float) -> int:
    """Wait up to ``timeout`` s until ``in_flight()`` is 0 at two looks in a row (a request moving from the
    queue to the engine is briefly in neither); returns how many are left."""
    deadline, idle = time.monotonic() + timeout, 0
    while idle < 2 and time.monotonic() < deadline:
        idle = idle + 1 if in_flight() == 0 else 0
        time.sleep(_POLL)
    return 0 if idle >= 2 else in_flight()


def ray_processes() -> list[Any]:
    """This process's descendants that are Ray's (raylet, GCS, workers, agents), as psutil processes."""
    try:
        import psutil
    except ImportError:  # without psutil, ray.shutdown() alone ends them
        return []
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if child.name().startswith(("ray", "gcs_server")) or "/ray/" in command or "ray::" in command:
            found.append(child)
    return found


def end_processes(processes: list[Any], timeout: float = 5.0) -> None:
    """SIGTERM ``processes``, and kill those left after ``timeout`` s (``ray.shutdown()`` leaves Ray's agent
    processes to notice on their own, for minutes)."""
    if not processes:
        return
    import psutil

    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
