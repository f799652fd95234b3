"""The grammar worker: a process that compiles ``response_format`` grammars the way the engine will, and dies alone.

Run by ``serving.grammar`` as ``python -m ov_causal.serving.grammar_worker FOLDER``. It reads one JSON request a
line on stdin (``{"id": n, "format": {...}}``) and answers one line on stdout: ``{"id": n, "keywords": {...}}``
(the ``StructuredOutputConfig`` keywords) or ``{"id": n, "error": "..."}``. Each grammar is built by
``model.structured`` and then compiled by xgrammar, the grammar compiler GenAI runs inside its engine, against
the model's own vocabulary: what fails or takes long here would fail or stall the engine. A slow or huge
compile is ended by the parent killing this process. It exits when its stdin closes (the parent went away).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..convert.sources import CONFIG_FILE
from .engine import engine_message

# tokenizer.json decoder types -> xgrammar's vocabulary types (its VocabType enum's values)
_VOCAB_TYPES = {"ByteLevel": 2, "ByteFallback": 1}
_RAW = 0


def vocabulary(folder: Path) -> tuple[list[str], int]:
    """The model's tokens in id order and their xgrammar vocabulary type, from the folder's ``tokenizer.json``.

    Without one, placeholder tokens of the model's vocabulary size: the compile then still costs what it will
    cost the engine (a grammar's syntax does not depend on the tokens).
    """
    path = folder / "tokenizer.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = dict(data.get("model", {}).get("vocab") or {})
        ids.update({t["content"]: t["id"] for t in data.get("added_tokens") or []})
        if ids:
            tokens = [f"<unused{i}>" for i in range(max(ids.values()) + 1)]
            for text, i in ids.items():
                tokens[i] = text
            return tokens, _vocab_type(data.get("decoder"))
    config_path = folder / CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    size = config.get("vocab_size") if isinstance(config.get("vocab_size"), int) else 32000
    return [f"<token{i}>" for i in range(size)], _RAW


def _vocab_type(decoder: Any) -> int:
    if not isinstance(decoder, dict):
        return _RAW
    kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders") or [] if isinstance(d, dict)]
    return next((_VOCAB_TYPES[k] for k in kinds if k in _VOCAB_TYPES), _RAW)


@lru_cache(maxsize=1)  # loaded once a process: a second find_spec would meet the stand-in package below
def xgrammar_core() -> Any:
    """xgrammar's compiled core, without its Python package.

    The package imports torch and transformers at import (~500 MiB and 5-15 s here) for token masks on tensors,
    which this worker never applies; its core is all a compile needs (55 MiB, about a second). tvm_ffi, which
    loads the core, tries torch and goes on without it. Written against xgrammar 0.2.8's layout (pinned; the
    tests compile with it and compare its verdicts with the engine's).
    """
    sys.modules.setdefault("torch", None)  # a None entry makes "import torch" fail: this process needs no torch
    spec = importlib.util.find_spec("xgrammar")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("xgrammar is not installed: pip install 'xgrammar==0.2.8'")
    package = types.ModuleType("xgrammar")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["xgrammar"] = package
    importlib.import_module("xgrammar.load_binding")
    return importlib.import_module("xgrammar.tvm_ffi_binding._ffi_api")


def _compiler(folder: Path) -> Any:
    core = xgrammar_core()
    tokens, kind = vocabulary(folder)
    info = core.TokenizerInfo(tokens, kind, None, None, False)  # vocab, type, size, stop ids, prefix space
    return core.GrammarCompiler(info, 1, False, -1)  # one thread, no cache (ours is by format), no limit


def compile_format(compiler: Any, response_format: Any) -> dict[str, str] | None:
    """The ``StructuredOutputConfig`` keywords of ``response_format``, compiled as the engine compiles them."""
    from ..model.structured import constraint
    from ..model.tool_prompt import TOOLS_FORMAT, constraint_of

    tools = isinstance(response_format, dict) and response_format.get("type") == TOOLS_FORMAT
    keywords = constraint_of(response_format) if tools else constraint(response_format)
    if keywords is None:
        return None
    try:
        if "regex" in keywords:
            compiler.compile_regex(keywords["regex"])
        elif "structural_tags_config" in keywords:
            compiler.compile_structural_tag(keywords["structural_tags_config"])
        else:
            compiler.compile_grammar_from_strings(keywords["grammar"], "root")
    except RuntimeError as exc:  # "[time] file.cc:83: Regex parsing error at position 3: Lookahead is not ..."
        raise ValueError(_engine_message(str(exc), keywords.get("regex", keywords.get("grammar", "")))) from None
    return keywords


def _engine_message(text: str, source: str) -> str:
    reason = engine_message(RuntimeError(text)).rstrip(".")
    where = re.search(r"at position (\d+)", reason)
    near = f" (near `{source[max(0, int(where[1]) - 12):int(where[1]) + 12]}`)" if where else ""
    return (f"cannot be compiled by the engine's grammar compiler: {reason}{near}. Rewrite the schema's 'pattern' "
            "keywords without lookarounds, atomic groups, possessive quantifiers, \\b, named groups, inline flags "
            "or backreferences.")


def main(argv: list[str]) -> int:
    compiler = _compiler(Path(argv[0]))
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = {"keywords": compile_format(compiler, request["format"])}
        except (ValueError, TypeError) as exc:
            answer = {"error": str(exc)}
        out.write(json.dumps({"id": request["id"], **answer}) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
