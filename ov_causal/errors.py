"""The exceptions ov_causal raises: one base class, each subclass also a fitting builtin. Warnings go through
``warn``, which points them at the user's line."""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class OVCausalError(Exception):
    """Base class of every error raised by ov_causal."""


class PresetError(OVCausalError, ValueError):
    """An unknown preset name or an invalid compression/runtime setting."""


class OptionError(OVCausalError, ValueError):
    """An unknown keyword, or an ``ov_config`` key/value OpenVINO would reject."""


class DeviceError(OVCausalError, ValueError):
    """A device that does not exist on this machine."""


class ModelSourceError(OVCausalError, FileNotFoundError):
    """A model path or id that cannot be found or is not a model folder."""


class UnsupportedModelError(OVCausalError, ValueError):
    """An architecture or model layout that cannot be exported or loaded as asked."""


class ExportError(OVCausalError, RuntimeError):
    """The export or save failed; nothing partial was published."""


class LoraError(OVCausalError, ValueError):
    """An adapter that cannot be fused: missing, unsafe, unreadable, for another base, or badly weighted."""

    def __init__(self, message: str, keyword: str | None = None) -> None:
        super().__init__(message)
        self.keyword = keyword  # the opt-in the message names (e.g. "lora_allow_pickle=True"), if any

    def naming(self, flag: str) -> LoraError:
        """The same error naming ``flag`` (e.g. the CLI's ``--allow-pickle``) instead of the Python keyword."""
        if self.keyword is None:
            return self
        return LoraError(str(self).replace(self.keyword, flag), flag)


class CacheError(OVCausalError, OSError):
    """The export cache cannot be used as it is (a file where a folder should be, no permission, ...)."""


class ManifestError(OVCausalError, ValueError):
    """An ``ov_causal.json`` that cannot be read: not JSON, or missing what every export records."""


class DamagedModelError(OVCausalError, RuntimeError):
    """A model file OpenVINO cannot read (empty, truncated or overwritten)."""


class StructuredOutputError(OVCausalError, ValueError):
    """A malformed ``response_format``, or a JSON schema that cannot be compiled for constrained generation."""


class MissingExtraError(OVCausalError, ImportError):
    """A feature needs an optional dependency (an extra such as ``ov_causal[ray]``) that is not installed."""


class ServerError(OVCausalError, RuntimeError):
    """A server that did not come up: its HTTP thread stopped or did not answer in time."""


class APIError(OVCausalError, RuntimeError):
    """A request the server refuses: an HTTP status and the fields of an OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def suggest(given: str, valid: Iterable[str], aliases: Mapping[str, Sequence[str]] | None = None) -> str:
    """Return ' Did you mean X?' (or ' Did you mean one of X, Y, Z?') for a name not in ``valid``, or ''.

    The first rule that finds a valid name wins, each ignoring case:
    ``aliases`` (another library's word for ours: transformers' ``quantize`` -> ``preset``); the names that start
    with ``given`` (``int4`` -> every int4 preset); a close spelling (``modle`` -> ``model``); the names ``given``
    starts with or contains, or that contain it (``presets`` -> ``preset``); the longest shared start of 4 or
    more characters (``quantize`` -> ``quantization_config``); a looser spelling match.

    Example:
        >>> suggest("int4", ["int8", "int4_sym_g128", "int4_asym_g128"])
        " Did you mean one of 'int4_sym_g128', 'int4_asym_g128'?"
    """
    names = list(dict.fromkeys(valid))
    close = _closest(given, names, aliases or {})
    if not close:
        return ""
    shown = [repr(name) for name in close[:_MOST_SHOWN]] + (["..."] if len(close) > _MOST_SHOWN else [])
    if len(shown) == 1:
        return f" Did you mean {shown[0]}?"
    if len(shown) == 2:
        return f" Did you mean {shown[0]} or {shown[1]}?"
    return f" Did you mean one of {', '.join(shown)}?"


_MOST_SHOWN = 8


def _closest(given: str, names: list[str], aliases: Mapping[str, Sequence[str]]) -> list[str]:
    """The names ``suggest`` offers for ``given``, best first (see its rules)."""
    typed = given.lower().strip()
    lower = {name.lower(): name for name in names}
    if not typed or typed in lower:
        return [lower[typed]] if typed else []
    aliased = [name for name in aliases.get(typed, ()) if name in names]
    started = [name for name in names if name.lower().startswith(typed)] if len(typed) >= 2 else []
    spelt = difflib.get_close_matches(typed, list(lower), n=1, cutoff=0.75)
    inside = [name for name in names if len(typed) >= 3 and min(len(name), len(typed)) >= 3
              and (name.lower() in typed or typed in name.lower())]
    for found in (aliased, started, [lower[n] for n in spelt], inside, _longest_shared_start(typed, names)):
        if found:
            return found
    return [lower[n] for n in difflib.get_close_matches(typed, list(lower), n=1, cutoff=0.6)]


def _longest_shared_start(typed: str, names: list[str]) -> list[str]:
    """The names sharing the longest start with ``typed`` (4 characters or more; fewer for a short ``typed``),
    the closest spelt first."""
    def shared(name: str) -> int:
        return len(os.path.commonprefix([typed, name.lower()]))

    best = max(map(shared, names), default=0)
    if best < max(2, min(4, len(typed) - 1)):
        return []
    found = [name for name in names if shared(name) == best]
    return sorted(found, key=lambda name: -difflib.SequenceMatcher(None, typed, name.lower()).ratio())


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside ov_causal: the user's line, however deep the call."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
