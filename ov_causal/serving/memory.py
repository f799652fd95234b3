"""Giving memory back after a burst: when the serving core's process has grown well past its idle size.

GenAI keeps its KV-cache pool, and OpenVINO's CPU plugin its buffers, at their high-water mark: measured on a
246M int8 Llama, a core idles at 560 MiB, reaches 1175 MiB on 16 prompts of ~900 tokens and stays at 1167 MiB
seconds later, with or without prefix caching and after ``malloc_trim``; a new pipeline starts at 567 MiB.
So once the engine has been idle for a moment, a core that grew by more than its slack builds its pipeline
again (the prefix cache is lost; requests arriving meanwhile wait in the queue).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


def resident_mib() -> float:
    """This process's resident memory in MiB (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class MemoryWatch:
    """When to rebuild: resident memory above the first idle size plus ``slack_mib``, idle for ``idle_s``."""

    slack_mib: float | None
    idle_s: float = 2.0
    baseline_mib: float | None = None
    idle_since: float | None = None
    rebuilds: int = 0

    def went_idle(self) -> None:
        """The engine has nothing left to do (called after every busy period)."""
        if self.baseline_mib is None:
            self.baseline_mib = resident_mib()  # the first idle moment, the model warmed up by a request
        self.idle_since = time.monotonic()

    def busy(self) -> None:
        self.idle_since = None

    def wait_s(self) -> float | None:
        """Seconds until a rebuild is due (0: now); None when no rebuild is in view."""
        if self.slack_mib is None or self.baseline_mib is None or self.idle_since is None:
            return None
        if resident_mib() <= self.baseline_mib + self.slack_mib:
            self.idle_since = None  # nothing to give back: look again after the next busy period
            return None
        return max(0.0, self.idle_since + self.idle_s - time.monotonic())
