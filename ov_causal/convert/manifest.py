"""The small JSON record written beside every export: preset, source, runtime and library versions."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from ..config.presets import Compression, Runtime
from ..errors import ManifestError, warn

MANIFEST_FILE = "ov_causal.json"
FORMAT = 1
_LIBRARIES = ("ov_causal", "openvino", "openvino-tokenizers", "optimum-intel", "nncf", "transformers", "torch")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


@dataclass(frozen=True)
class Manifest:
    """What an export folder holds and how it was made."""

    source: str
    preset: str
    compression: Compression
    stateful: bool
    runtime: Runtime | None = None
    ov_config: dict[str, str] = field(default_factory=dict)
    adapters: list[dict[str, Any]] = field(default_factory=list)
    tuned: dict[str, Any] | None = None
    # Layers whose input channels the int4 group size does not divide: {layer: "int4 g64" | "int8"}.
    fallback: dict[str, str] = field(default_factory=dict)
    # Made from a llama.cpp GGUF file: {"file", "sha256", "type" (e.g. 'Q4_1'), "route": "kept" | "dequantized"}.
    gguf: dict[str, str] | None = None
    versions: dict[str, str] = field(default_factory=library_versions)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def fallback_summary(self) -> str:
        """One line on the group-size fallback, e.g. '3 layers: int4 g64 (2), int8 (1)'; '' when there was none."""
        if not self.fallback:
            return ""
        counts = Counter(self.fallback.values())
        kinds = ", ".join(f"{kind} ({n})" for kind, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        return f"{len(self.fallback)} layer{'s' if len(self.fallback) != 1 else ''}: {kinds}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        return data

    def write(self, folder: Path) -> None:
        (folder / MANIFEST_FILE).write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, folder: Path) -> Manifest | None:
        """The folder's manifest, or None for an export made by other tools (e.g. optimum-cli).

        Keys this version does not know (written by a newer ov_causal) are ignored with a warning
        naming them; a file that is not JSON or lacks a required key raises ``ManifestError``.
        """
        path = folder / MANIFEST_FILE
        if not path.is_file():
            return None
        data = _load(path)
        data.pop("format", None)
        data = _known(cls, data, path, "")
        missing = [f.name for f in fields(cls) if f.name not in data and _required(f)]
        if missing:
            raise _damaged(path, f"it lacks {', '.join(missing)}")
        for key, kind in (("compression", Compression), ("runtime", Runtime)):
            value = data.get(key)
            if value is None:
                continue
            if not isinstance(value, dict):
                raise _damaged(path, f"its {key!r} is {value!r}, not an object")
            data[key] = _build(kind, _known(kind, value, path, f"{key}."), path, key)
        return _build(cls, data, path, "the manifest")


def _damaged(path: Path, problem: str) -> ManifestError:
    return ManifestError(
        f"{path} cannot be read: {problem}. It describes how the export was made; delete it (the folder then "
        "loads as a plain OpenVINO export) or save the model again."
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _damaged(path, exc.strerror or type(exc).__name__) from exc
    except ValueError as exc:
        raise _damaged(path, f"it is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _damaged(path, f"it holds a JSON {type(data).__name__}, not an object")
    return data


def _required(f: Field) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _known(kind: type, data: dict[str, Any], path: Path, prefix: str) -> dict[str, Any]:
    """``data`` without the keys ``kind`` does not have, with a warning naming them."""
    names = {f.name for f in fields(kind)}
    unknown = sorted(k for k in data if k not in names)
    if unknown:
        warn(
            f"{path} has keys this version of ov_causal does not know ({', '.join(prefix + k for k in unknown)}), "
            "probably written by a newer version: they are ignored. Upgrade ov_causal to use them.")
    return {k: v for k, v in data.items() if k in names}


def _build(kind: type, data: dict[str, Any], path: Path, what: str) -> Any:
    try:
        return kind(**data)
    except (TypeError, ValueError) as exc:  # presets validate their fields in __post_init__
        raise _damaged(path, f"{what} holds an invalid value ({exc})") from exc
