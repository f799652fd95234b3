"""Progress bars for long work: one bar per stage (export, compress, evaluate, bench), on or off with one switch.

Bars come from ``tqdm.auto``: a widget in Jupyter, text on stderr in a terminal. Turn them off with
``ov_causal.set_progress(False)`` or the environment variable ``OV_CAUSAL_PROGRESS=0``
(``set_progress`` wins over the variable; ``set_progress(None)`` goes back to it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PROGRESS_ENV = "OV_CAUSAL_PROGRESS"
_switch: bool | None = None  # set_progress(); None: follow the environment variable


def set_progress(enabled: bool | None) -> None:
    """Show (True) or hide (False) ov_causal's progress bars; None follows ``$OV_CAUSAL_PROGRESS`` again.

    Example:
        >>> import ov_causal
        >>> ov_causal.set_progress(False)  # no bars from here on, in this process
    """
    global _switch
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress({enabled!r}): pass True, False or None.")
    _switch = enabled


def progress_enabled() -> bool:
    """Whether bars are shown: ``set_progress``'s choice, else ``$OV_CAUSAL_PROGRESS`` (on unless 0/false/off/no)."""
    if _switch is not None:
        return _switch
    return os.environ.get(PROGRESS_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


class _NoBar:
    """Stands in for a tqdm bar when bars are off (or tqdm is missing)."""

    def update(self, n: float = 1) -> None:
        pass

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def set_description_str(self, text: str = "", refresh: bool = True) -> None:
        pass


@contextmanager
def stage(name: str, total: int | None = None, unit: str = "step") -> Iterator[Any]:
    """A progress bar for one stage of work: ``bar.update()`` per step; closed when the block ends.

    Args:
        name: what is being done, shown left of the bar (e.g. ``"export demo_model"``).
        total: number of steps (None: a counter without a bar).
        unit: what one step is.

    Example:
        >>> with stage("score windows", total=4) as bar:
        ...     for _ in range(4):
        ...         bar.update()
    """
    if not progress_enabled():
        yield _NoBar()
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency of transformers; without it, no bars
        yield _NoBar()
        return
    bar = tqdm(total=total, desc=name, unit=unit, leave=True, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()
