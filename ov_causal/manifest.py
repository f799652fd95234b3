"""The small JSON record written beside every export: preset, source, runtime and library versions."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .presets import Compression, Runtime

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
        """The folder's manifest, or None for an export made by other tools (e.g. optimum-cli)."""
        path = folder / MANIFEST_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("format", None)
        data["compression"] = Compression(**data["compression"])
        data["runtime"] = Runtime(**data["runtime"]) if data.get("runtime") else None
        return cls(**data)
