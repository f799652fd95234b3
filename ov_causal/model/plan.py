"""What ``from_pretrained(model, **keywords)`` would load, decided once and without torch: the load plan.

``plan_load`` resolves the keywords as ``from_pretrained`` does (``load_request.resolve_request``) and says whether
the folder is ready for ``openvino_genai.LLMPipeline`` as it is (an OpenVINO export folder, or a checkpoint whose
export is already in the export cache), with the OpenVINO properties a loaded model's GenAI engine would get, or
why not. Both servers, Ray Data's batch path and ``ov-causal generate`` read it; anything not ready is loaded
through ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.hub import resolve_hf_kwargs
from ..config.presets import Runtime
from ..convert.cache import Hit, cache_root, touch_used, verify
from ..convert.cache_locks import hold_entry
from ..convert.gguf_routes import gguf_key
from ..convert.integrity import ENTRIES_DIR
from ..convert.ir import is_stateful
from ..convert.loading import (
    ExportRequest,
    Prepared,
    cache_key,
    check_ir_files,
    export_settings,
    read_ir,
    runtime_config,
)
from ..convert.manifest import Manifest
from ..convert.sources import Source
from .backends import has_ov_tokenizers
from .load_request import LoadOptions, Resolved, resolve_request

# The keywords a ready folder honours without loading the model; any other one is from_pretrained's to apply.
READY_KEYWORDS = frozenset({"preset", "runtime", "device", "ov_config", "ov_cache_dir", "backend"})
# transformers keywords that only say where the model is (a GGUF file in the folder): planned like the model id.
SOURCE_KEYWORDS = frozenset({"gguf_file"})


@dataclass(frozen=True)
class LoadPlan:
    """What ``from_pretrained`` would load: the request resolved, and the ready folder if there is one.

    ``resolved`` is None when the request is left to ``from_pretrained`` (``preset="auto"``, or a keyword outside
    ``READY_KEYWORDS``); ``folder`` is None when the model is not ready, and ``reason`` says why.
    """

    model: str
    device: str  # upper-cased, as LoadOptions checks it
    resolved: Resolved | None
    folder: Path | None = None
    runtime: Runtime | None = None  # the runtime preset in force on the ready folder
    properties: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    hold: Any = field(default=None, compare=False, repr=False)  # the cache entry's use lock, while the plan lives

    @property
    def ready(self) -> bool:
        return self.folder is not None

    @property
    def source(self) -> Source | None:
        return None if self.resolved is None else self.resolved.source

    @property
    def request(self) -> ExportRequest | None:
        return None if self.resolved is None else self.resolved.request



def plan_load(model: str | os.PathLike[str], **keywords: Any) -> LoadPlan:
    """The plan for ``from_pretrained(model, **keywords)``: its resolved request, and its ready folder or why not.

    Raises what ``from_pretrained`` raises for a missing model, an unknown preset, device or keyword.

    Example:
        >>> plan = plan_load("exported/", runtime="throughput")
        >>> plan.folder, plan.properties  # what LLMPipeline loads, with the properties from_pretrained gives it
    """
    name = os.fspath(model)
    options, kwargs = LoadOptions.split(keywords)  # an unknown keyword lands in kwargs: resolve_request refuses it
    others = sorted(set(keywords) - READY_KEYWORDS - SOURCE_KEYWORDS)
    if others:
        with warnings.catch_warnings():  # from_pretrained warns of an ignored keyword when it applies the rest
            warnings.simplefilter("ignore")
            resolve_hf_kwargs(kwargs)  # an unknown keyword is refused here too, with a suggestion
        return LoadPlan(name, options.device, None, reason=f"from_pretrained applies {', '.join(others)}")
    if options.preset == "auto":
        return LoadPlan(name, options.device, None, reason="preset='auto' is decided by from_pretrained")
    resolved = resolve_request(model, options, kwargs)
    if options.backend == "optimum":
        return LoadPlan(name, resolved.device, resolved, reason="backend='optimum' runs the transformers loop")
    prepared, reason = _folder(resolved.source, resolved.request)
    if prepared is None:
        return LoadPlan(name, resolved.device, resolved, reason=reason)
    runtime, properties = runtime_config(resolved.runtime, resolved.overrides, prepared, resolved.source.kind,
                                         resolved.device, options.ov_config is not None)
    hold = prepared.cache.use if prepared.cache is not None else None
    return LoadPlan(name, resolved.device, resolved, prepared.folder, runtime, properties, hold=hold)


def _folder(source: Source, request: ExportRequest) -> tuple[Prepared | None, str]:
    """The folder GenAI can load as it is, or None and why not."""
    if source.kind == "gguf":
        prepared = _entry(gguf_key(source, request)[0], request)
        if prepared is None:
            return None, "the GGUF file's export is not in the export cache (or is damaged, or being written)"
    elif source.kind == "checkpoint":
        prepared = _entry(cache_key(source, request)[0], request)
        if prepared is None:
            return None, "the checkpoint's export is not in the export cache (or is damaged, or being written)"
        if not export_settings(source, request)[2]:
            return None, "a stateless export (GenAI needs the stateful form)"
    elif request.compression is None:
        check_ir_files(source.path)  # an empty file is named here, not by GenAI's compile error
        prepared = Prepared(source.path, Manifest.read(source.path))
    else:
        return None, "a preset on an export folder may need a compressed copy: from_pretrained makes it"
    if not has_ov_tokenizers(prepared.folder):
        return None, "no OpenVINO tokenizer and detokenizer in the folder"
    if not _stateful(prepared):
        return None, "a stateless export (GenAI needs the stateful form)"
    return prepared, ""


def _entry(key: str, request: ExportRequest) -> Prepared | None:
    """The intact cache entry ``key``, or None (not exported yet, damaged, or being written)."""
    entry = cache_root(request.ov_cache_dir) / ENTRIES_DIR / key  # the layout cache.get_or_build writes
    if not entry.is_dir() or verify(entry) is not None:
        return None
    hold = hold_entry(entry)  # in use from here: the size cap leaves it alone
    if not entry.is_dir():  # evicted between the check and the hold
        return None
    touch_used(entry)  # a hit counts as a use, as in get_or_build
    return Prepared(entry, Manifest.read(entry), cache=Hit(entry, hit=True, use=hold))


def _stateful(prepared: Prepared) -> bool:
    if prepared.manifest is not None:
        return prepared.manifest.stateful
    return is_stateful(read_ir(prepared.folder))
