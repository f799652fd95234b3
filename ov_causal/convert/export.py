"""Hugging Face checkpoint -> OpenVINO IR folder (with tokenizers), written atomically."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..config.hub import HubOptions
from ..config.presets import Compression
from ..errors import ExportError, OVCausalError, PresetError
from ..ui.progress import stage
from .diskspace import (
    check_free_space,
    derive_bytes,
    disk_full_errors,
    export_bytes,
    free_bytes,
    is_disk_full,
    is_write_error,
)
from .files import publish_folder, staging
from .integrity import ENTRY_FILE, USED_FILE
from .manifest import MANIFEST_FILE
from .sources import DETOKENIZER_FILE, IR_FILE, TASK, TOKENIZER_FILE, Source, count_parameters

logger = logging.getLogger(__name__)

IR_FILES = (IR_FILE, IR_FILE.replace(".xml", ".bin"))
TOKENIZER_FILES = tuple(f"{name[:-4]}.{ext}" for name in (TOKENIZER_FILE, DETOKENIZER_FILE) for ext in ("xml", "bin"))


def optimum_export_config(compression: Compression) -> Any:
    """The optimum-intel ``OVConfig`` of the export step: fp16 or fp32 weights.

    ``main_export`` leaves weights uncompressed when given a quantization config (optimum-cli runs
    the quantization as a separate step), so int8/int4 are applied afterwards by ``compress_folder``.
    """
    from optimum.intel import OVConfig

    return OVConfig(dtype="fp16" if compression.weights == "fp16" else "fp32")


def read_ir(folder: Path) -> Any:
    """The ``openvino.Model`` of an export folder (weights memory-mapped, not copied)."""
    from ..config.options import core

    return core().read_model(folder / IR_FILE)


def compress_folder(folder: Path, compression: Compression, calibration: Sequence[str] = ()) -> dict[str, str]:
    """Compress the IR in ``folder`` in place (written under a new name, then renamed over the old).

    ``calibration`` texts (tokenized with the folder's tokenizer) feed the data-aware methods.
    Returns the layers that fell back from the int4 group size ({layer: "int4 g64" | "int8"}).
    """
    return compress_into(folder, folder, compression, calibration)


def compress_into(source: Path, out: Path, compression: Compression, calibration: Sequence[str] = ()) -> dict[str, str]:
    """Compress the uncompressed IR in ``source`` with NNCF and write it into ``out`` (``source`` itself: under a
    new name, then renamed over the old). The data-aware methods calibrate on ``calibration`` texts tokenized with
    ``source``'s tokenizer; returns the layers that fell back from the int4 group size."""
    import openvino

    model = read_ir(source)
    dataset, calibrated = None, ""
    if compression.data_aware and calibration:
        from transformers import AutoTokenizer

        from .calibration import calibration_dataset, calibration_windows

        windows = calibration_windows(list(calibration), AutoTokenizer.from_pretrained(source))
        dataset = calibration_dataset(model, windows)
        calibrated = f", calibrated on {len(windows)} windows"
    with stage(f"compress to {compression.describe()}{calibrated}", total=1) as bar, quiet_libraries():
        model = compress_ir(model, compression, dataset)
        bar.update()
    fallback = model_fallback(model, compression)
    openvino.save_model(model, out / "compressed.xml", compress_to_fp16=False)
    del model
    os.replace(out / "compressed.bin", out / IR_FILES[1])
    os.replace(out / "compressed.xml", out / IR_FILE)
    return fallback


def model_fallback(model: Any, compression: Compression) -> dict[str, str]:
    """The layers of a compressed ``openvino.Model`` that fell back from the preset's int4 group size."""
    from .ir import group_size_fallback

    if compression.weights != "int4" or not compression.group_size or compression.group_size <= 0:
        return {}
    return group_size_fallback(model, compression.group_size, MIN_GROUP_SIZE)


def summarize(exc: BaseException, lines: int = 4, width: int = 300) -> str:
    """'Type: message' cut to a few lines (NNCF lists every failing layer: hundreds of lines)."""
    text = str(exc).strip().splitlines() or [""]
    kept = [line if len(line) <= width else line[:width] + "..." for line in text[:lines]]
    more = f" [... {len(text) - lines} more lines]" if len(text) > lines else ""
    return f"{type(exc).__name__}: {' '.join(line.strip() for line in kept)}{more}"


def compress_ir(model: Any, compression: Compression, dataset: Any = None) -> Any:
    """Compress the weights of an uncompressed ``openvino.Model`` with NNCF.

    ``dataset`` (an ``nncf.Dataset`` of model inputs) is needed by the data-aware methods.
    """
    import nncf

    if compression.data_aware and dataset is None:
        raise PresetError(
            f"{compression.describe()} is data-aware: pass calibration= (a file, a string or a list of strings "
            "of the text the model will see)."
        )
    try:
        return nncf.compress_weights(model, **nncf_options(compression, dataset))
    except Exception as exc:  # NNCF and OpenVINO raise many types (InvalidGroupSizeError is a bare Exception)
        raise ExportError(
            f"NNCF could not compress the weights as {compression.describe()}: {summarize(exc)}. "
            "Nothing was written. Try another preset (int8 works for every model); OV_CAUSAL_VERBOSE=1 shows "
            "NNCF's logs."
        ) from exc


MIN_GROUP_SIZE = 32  # NNCF's own minimum for an adjusted group: smaller groups slow inference down


def nncf_options(compression: Compression, dataset: Any = None) -> dict[str, Any]:
    """Keywords of ``nncf.compress_weights`` for a quantized ``compression``.

    A layer whose input channels the group size does not divide gets the largest power-of-two group
    that does (NNCF's ADJUST fallback, down to ``MIN_GROUP_SIZE``), else int8 (NNCF's backup mode).
    """
    import nncf

    if compression.weights == "int8":
        return dict(mode=nncf.CompressWeightsMode.INT8_ASYM)
    options: dict[str, Any] = dict(
        mode=nncf.CompressWeightsMode.INT4_SYM if compression.sym else nncf.CompressWeightsMode.INT4_ASYM,
        group_size=compression.group_size,
        ratio=compression.ratio,
        backup_mode=nncf.BackupMode.INT8_ASYM,
        advanced_parameters=nncf.AdvancedCompressionParameters(
            group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST, min_adjusted_group_size=MIN_GROUP_SIZE
        ),
    )
    if compression.data_aware:
        options.update(dataset=dataset, awq=compression.awq, scale_estimation=compression.scale_estimation,
                       gptq=compression.gptq, subset_size=128)  # calibration_windows yields at most 128
    if compression.all_layers:
        options["all_layers"] = True
    if compression.sensitivity is not None:
        options["sensitivity_metric"] = nncf.SensitivityMetric[compression.sensitivity.upper()]
    return options


_NOISY_LOGGERS = ("transformers", "optimum", "nncf", "torch", "openvino_tokenizers")


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hold back the tracing warnings and info logs export and compression print (``OV_CAUSAL_VERBOSE=1`` shows them).

    Log levels and warning filters are restored afterwards; nothing is changed at import time.
    """
    if os.environ.get("OV_CAUSAL_VERBOSE", "") not in ("", "0"):
        yield
        return
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), _quiet_library_bars():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


@contextmanager
def _quiet_library_bars() -> Iterator[None]:
    """Hide the progress bars of transformers (weight loading) and NNCF (rich bars: an Output widget in Jupyter):
    ours (``ov_causal.ui.progress``) show one bar per stage instead."""
    hf_logging = sys.modules.get("transformers.utils.logging")
    hf_bars = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    if hf_bars:
        hf_logging.disable_progress_bar()
    try:
        import rich  # NNCF's bars go through rich's global console

        console = rich.get_console()
    except ImportError:
        console = None
    saved = (console.quiet, console.is_jupyter) if console is not None else None
    if console is not None:
        console.quiet, console.is_jupyter = True, False
    try:
        yield
    finally:
        if hf_bars:
            hf_logging.enable_progress_bar()
        if console is not None and saved is not None:
            console.quiet, console.is_jupyter = saved


@contextmanager
def staging_folder(target: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``target`` (same filesystem), removed if the block fails.

    Leftovers of a killed earlier save into ``target`` are cleaned up (see ``ov_causal.convert.files``).
    """
    with staging(target) as tmp:
        yield tmp


def publish(tmp: Path, target: Path) -> None:
    """Move a finished folder into place, all or nothing (see ``ov_causal.convert.files.publish_folder``).

    Into an existing folder, files of other names that the user keeps there are kept (as
    ``transformers``' ``save_pretrained`` does).
    """
    publish_folder(tmp, target)


@contextmanager
def _explained(step: str, advice: str, folder: Path, needed: int) -> Iterator[None]:
    """Turn a library failure in ``step`` into a short ``ExportError``; a full disk is left to ``disk_full_errors``."""
    try:
        yield
    except OVCausalError:
        raise
    except Exception as exc:
        if is_disk_full(exc, folder, needed):
            raise
        if is_write_error(exc):
            advice = f"Check that {str(folder)!r} is writable and has room ({free_bytes(folder) / 2**20:.0f} MiB free)."
        raise ExportError(f"{step} failed: {summarize(exc)}. Nothing was written. {advice}") from exc


def export_checkpoint(
    source: Source,
    target: Path,
    compression: Compression,
    stateful: bool,
    hub: HubOptions,
    finish: Callable[[Path, dict[str, str]], None] | None = None,
    calibration: Sequence[str] = (),
) -> Path:
    """Export ``source`` into ``target`` (IR, config, HF and OpenVINO tokenizers), atomically.

    Args:
        source: a checkpoint folder.
        target: where the finished export appears; nothing appears there if the export fails.
        compression: weight storage.
        stateful: keep the KV cache inside the model (faster) or as explicit inputs/outputs.
        hub: download/export keywords (trust_remote_code, ...).
        finish: called with the staging folder and the layers that fell back from the int4 group size
            (``compress_folder``'s answer) before the folder is published, e.g. to write a manifest.
        calibration: texts for data-aware compression methods.
    """
    from optimum.exporters.openvino import main_export

    needed = export_bytes(count_parameters(source.path), compression)
    check_free_space(target.parent, needed, source.name)
    with staging_folder(target) as tmp, quiet_libraries(), disk_full_errors(target.parent, needed, source.name):
        with stage(f"export {Path(source.name).name} to OpenVINO", total=1) as bar, _explained(
            f"exporting {source.name!r} to OpenVINO", "Check that the checkpoint loads with transformers.",
            target.parent, needed,
        ):
            main_export(
                str(source.path),
                output=tmp,
                task=TASK if hub.use_cache else "text-generation",
                stateful=stateful and hub.use_cache,
                ov_config=optimum_export_config(compression),  # fp32/fp16 only: main_export ignores int configs
                convert_tokenizer=True,
                trust_remote_code=hub.trust_remote_code,
                library_name="transformers",
            )
            bar.update()
        if not (tmp / IR_FILE).is_file():
            raise ExportError(f"exporting {source.name!r} produced no {IR_FILE}; nothing was written.")
        fallback: dict[str, str] = {}
        if compression.quantized:
            with _explained(f"compressing {source.name!r} to {compression.describe()}",
                            "Try another preset (int8 works for every model).", target.parent, needed):
                fallback = compress_folder(tmp, compression, calibration)
        if finish is not None:
            finish(tmp, fallback)
        publish(tmp, target)
    return target


_NOT_CARRIED = (*IR_FILES, MANIFEST_FILE, ENTRY_FILE, USED_FILE)  # rewritten for the derived export, or the cache's


def derive_export(
    base: Path,
    target: Path,
    compression: Compression,
    name: str,
    finish: Callable[[Path, dict[str, str]], None] | None = None,
    calibration: Sequence[str] = (),
) -> Path:
    """Make the ``compression`` export of a model from its uncompressed (fp32) export folder ``base``, atomically:
    no torch export. The IR is compressed by NNCF (int8/int4, ``compress_into``: what ``export_checkpoint`` does
    after its fp32 export) or saved with fp16 weights; the other files (configs, tokenizers) are copied.

    Args:
        base: an uncompressed export folder (a cache entry of the checkpoint's fp32 export); left as it is.
        target: where the derived export appears; nothing appears there if it fails.
        compression: weight storage (fp16, int8 or int4).
        name: the model's name, for messages.
        finish: as for ``export_checkpoint``, called before the folder is published.
        calibration: texts for data-aware compression methods.
    """
    import openvino

    needed = derive_bytes(base, compression)
    check_free_space(target.parent, needed, name)
    with staging_folder(target) as tmp, quiet_libraries(), disk_full_errors(target.parent, needed, name):
        for item in base.iterdir():
            if item.is_file() and not item.is_symlink() and item.name not in _NOT_CARRIED and item.name[0] != ".":
                shutil.copy2(item, tmp / item.name)
        fallback: dict[str, str] = {}
        with _explained(f"compressing {name!r} to {compression.describe()}",
                        "Try another preset (int8 works for every model).", target.parent, needed):
            if compression.quantized:
                fallback = compress_into(base, tmp, compression, calibration)
            else:  # what optimum's fp16 export does with the same trace: the weights saved as fp16
                with stage(f"save with {compression.describe()} weights", total=1) as bar:
                    openvino.save_model(read_ir(base), tmp / IR_FILE, compress_to_fp16=compression.weights == "fp16")
                    bar.update()
        if finish is not None:
            finish(tmp, fallback)
        publish(tmp, target)
    return target


def convert_tokenizer(tokenizer: Any, folder: Path) -> bool:
    """Write the OpenVINO tokenizer/detokenizer of a HF tokenizer into ``folder``; False if unsupported."""
    import openvino
    from openvino_tokenizers import convert_tokenizer as ov_convert

    try:
        ov_tokenizer, ov_detokenizer = ov_convert(tokenizer, with_detokenizer=True)
    except Exception as exc:  # openvino_tokenizers raises a variety of types for unsupported tokenizers
        logger.warning("The OpenVINO tokenizer could not be converted (%s); GenAI will not load this folder.", exc)
        return False
    openvino.save_model(ov_tokenizer, folder / TOKENIZER_FILE)
    openvino.save_model(ov_detokenizer, folder / DETOKENIZER_FILE)
    return True
