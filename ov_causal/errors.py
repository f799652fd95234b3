"""The exceptions ov_causal raises: one base class, each subclass also a fitting builtin. Warnings go through
``warn``, which points them at the user's line."""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable
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


def suggest(given: str, valid: Iterable[str]) -> str:
    """Return ' Did you mean X?' for the closest valid name, or ''."""
    close = difflib.get_close_matches(given, list(valid), n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside ov_causal: the user's line, however deep the call."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: warn's caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
