"""Optional dependencies (extras): import them on use, or say which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def require(module: str, extra: str, instead: str = "") -> ModuleType:
    """Import ``module``, or raise MissingExtraError naming ``pip install "ov_causal[<extra>]"`` (then ``instead``:
    a lighter way to the same end, if there is one)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this feature needs {module.split('.')[0]!r}, which is not installed ({exc}). "
            f'Install the extra: pip install "ov_causal[{extra}]"{instead}'
        ) from exc
