"""Chat templates rendered in Python from a folder's Hugging Face tokenizer files, with jinja2 (no transformers).

The environment is the one ``transformers``' ``apply_chat_template`` builds (sandboxed, ``trim_blocks``,
``lstrip_blocks``, loop controls, ``tojson``, ``raise_exception``, ``strftime_now``), so a template renders
the same text here as there.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import APIError, OptionError

# Special tokens transformers passes to every template by name.
_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class ChatTemplate:
    """A compiled chat template and the special tokens it may refer to.

    Args:
        source: the Jinja text of the template.
        special_tokens: ``bos_token``, ``eos_token``, ... as strings.
    """

    def __init__(self, source: str, special_tokens: dict[str, str] | None = None) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[jinja2.ext.loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise OptionError(f"the chat template does not compile: {exc}. Pass a valid Jinja template.") from None
        self.source = source
        self.special_tokens = dict(special_tokens or {})

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt text for ``messages`` (and ``tools``, OpenAI's function specs, as ``apply_chat_template(
        tools=...)`` passes them); a template that refuses them raises APIError(400)."""
        import jinja2

        try:
            return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         tools=tools or None, documents=None, **self.special_tokens)
        except _TemplateRefusal as exc:
            raise APIError(400, f"The chat template refused these messages: {exc}", param="messages") from None
        except jinja2.TemplateError as exc:
            raise APIError(400, f"The chat template failed on these messages: {exc}", param="messages") from None


class _TemplateRefusal(Exception):
    pass


def _raise(message: str) -> None:
    raise _TemplateRefusal(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def load_chat_template(folder: Path, given: str | None = None) -> ChatTemplate | None:
    """The template ``given``, else the folder's (``chat_template.jinja`` or tokenizer_config.json); None if none."""
    config = _read_json(folder / "tokenizer_config.json")
    source = given
    if source is None and (folder / "chat_template.jinja").is_file():
        source = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if source is None:
        source = config.get("chat_template")
        if isinstance(source, list):  # [{"name": "default", "template": ...}, ...]
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
    if not source:
        return None
    return ChatTemplate(source, _special_tokens(config))


def _special_tokens(config: dict[str, Any]) -> dict[str, str]:
    tokens = {}
    for name in _SPECIAL:
        value = config.get(name)
        if isinstance(value, dict):  # {"content": "<s>", "lstrip": false, ...}
            value = value.get("content")
        if isinstance(value, str):
            tokens[name] = value
    return tokens


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
