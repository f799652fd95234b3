"""``ov-causal export --for ovms``: a model repository OpenVINO Model Server serves as it is.

Layout (the format of OVMS's LLM servable, ``docs/llm/reference.md`` and ``docs/mediapipe.md`` of
openvinotoolkit/model_server, 2026.2 or newer)::

    OUT/config.json          {"model_config_list": [{"config": {"name": NAME, "base_path": NAME}}]}
    OUT/NAME/graph.pbtxt     the MediaPipe graph: HttpLLMCalculator with LLMCalculatorOptions
    OUT/NAME/openvino_model.xml/.bin, openvino_tokenizer.xml/.bin, openvino_detokenizer.xml/.bin,
             tokenizer_config.json, chat_template.jinja, generation_config.json, ...

Serve it with ``ovms --rest_port 8000 --config_path OUT/config.json`` (see ``OVMSExport.commands``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..convert.export import IR_FILES, TOKENIZER_FILES, publish, staging_folder
from ..errors import ExportError, OptionError, warn

GRAPH_FILE = "graph.pbtxt"
CONFIG_FILE = "config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Written when the tokenizer has no chat template: the messages' contents, one after another.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['content'] }}{% if not loop.last %}\n\n{% endif %}{% endfor %}"
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEVICE = re.compile(r"^[A-Z]+(\.[0-9]+)?(:[A-Z0-9.,]+)?$")

_GRAPH = """\
# OVMS_GRAPH_QUEUE_MAX_SIZE: AUTO
# Written by ov_causal {version} for OpenVINO Model Server (LLM servable, continuous batching).
input_stream: "HTTP_REQUEST_PAYLOAD:input"
output_stream: "HTTP_RESPONSE_PAYLOAD:output"

node: {{
  name: "LLMExecutor"
  calculator: "HttpLLMCalculator"
  input_stream: "LOOPBACK:loopback"
  input_stream: "HTTP_REQUEST_PAYLOAD:input"
  input_side_packet: "LLM_NODE_RESOURCES:llm"
  input_side_packet: "LLM_NODE_EXECUTION_CONTEXTS:llm_ctx"
  output_stream: "LOOPBACK:loopback"
  output_stream: "HTTP_RESPONSE_PAYLOAD:output"
  input_stream_info: {{
    tag_index: 'LOOPBACK:0',
    back_edge: true
  }}
  node_options: {{
    [type.googleapis.com / mediapipe.LLMCalculatorOptions]: {{
      models_path: "./",
      plugin_config: '{plugin_config}',
      enable_prefix_caching: {prefix_caching},
      cache_size: {cache_size},
      max_num_seqs: {max_num_seqs},
      device: "{device}",
    }}
  }}
  input_stream_handler {{
    input_stream_handler: "SyncSetInputStreamHandler",
    options {{
      [mediapipe.SyncSetInputStreamHandlerOptions.ext] {{
        sync_set {{
          tag_index: "LOOPBACK:0"
        }}
      }}
    }}
  }}
}}
"""


@dataclass(frozen=True)
class OVMSExport:
    """A written OVMS model repository."""

    repository: Path  # OUT: holds config.json and the servable folder
    name: str  # the model name clients send ("model": NAME)
    default_chat_template: bool  # the tokenizer had none: DEFAULT_CHAT_TEMPLATE was written

    @property
    def model_dir(self) -> Path:
        return self.repository / self.name

    @property
    def config_path(self) -> Path:
        return self.repository / CONFIG_FILE

    def commands(self, rest_port: int = 8000) -> list[str]:
        """The ``ovms`` command lines that serve this repository (config file, or the one graph)."""
        return [
            f"ovms --rest_port {rest_port} --config_path {self.config_path}",
            f"ovms --rest_port {rest_port} --model_path {self.model_dir} --model_name {self.name}",
        ]


def check_output(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder unless ``force`` (files of the same names are then replaced)."""
    if out.exists() and not out.is_dir():
        raise ExportError(f"cannot export into {str(out)!r}: it is a file. Pass a folder path.")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(
            f"{str(out)!r} exists and is not empty. Pass an empty or new folder, or --force (force=True) to "
            "write into it (files of the same names are replaced, others kept)."
        )


def model_name(model: str | os.PathLike[str], name: str | None) -> str:
    """The name OVMS serves ``model`` under: ``name``, else the model folder's or Hub id's last part."""
    name = name or Path(os.fspath(model).rstrip("/\\")).name
    if not _NAME.match(name):
        raise OptionError(f"model name {name!r} is not valid: use letters, digits, '.', '_' and '-' (pass --name).")
    return name


def graph_text(*, device: str, cache_size: int, max_num_seqs: int, enable_prefix_caching: bool,
               plugin_config: Mapping[str, Any]) -> str:
    """The ``graph.pbtxt`` of an LLM servable whose model files sit beside it (``models_path: "./"``)."""
    from .. import __version__

    if not _DEVICE.match(device):
        raise OptionError(f"device {device!r} is not an OpenVINO device name: use e.g. CPU, GPU, GPU.1 or NPU.")
    if cache_size < 0 or max_num_seqs < 1:
        raise OptionError(
            f"cache_size={cache_size} (GB of KV cache, 0 = grow as needed) must be >= 0 and "
            f"max_num_seqs={max_num_seqs} must be >= 1."
        )
    plugin = json.dumps(dict(plugin_config), sort_keys=True)
    if "'" in plugin:
        raise OptionError(f"plugin_config {plugin} contains a single quote, which graph.pbtxt cannot hold.")
    return _GRAPH.format(version=__version__, plugin_config=plugin, cache_size=cache_size, max_num_seqs=max_num_seqs,
                         prefix_caching=str(enable_prefix_caching).lower(), device=device)


def _has_chat_template(folder: Path) -> bool:
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("chat_template"))


def _merged_config(existing: Path, name: str) -> dict[str, Any]:
    """The repository's ``config.json`` with ``name`` served from ``OUT/name`` (other servables kept)."""
    config: dict[str, Any] = {"model_config_list": []}
    if existing.is_file():
        try:
            config = json.loads(existing.read_text(encoding="utf-8"))
            config.setdefault("model_config_list", [])
        except (OSError, ValueError) as exc:
            raise ExportError(f"{existing} is not valid JSON ({exc}); fix or remove it, then export again.") from exc
    entries = [e for e in config["model_config_list"] if e.get("config", {}).get("name") != name]
    config["model_config_list"] = [*entries, {"config": {"name": name, "base_path": name}}]
    return config


def export_ovms(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str | None = None,
    device: str = "CPU",
    cache_size: int = 0,
    max_num_seqs: int = 256,
    enable_prefix_caching: bool = True,
    plugin_config: Mapping[str, Any] | None = None,
    name: str | None = None,
    force: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> OVMSExport:
    """Write the model repository OpenVINO Model Server serves: IR, tokenizers, chat template, graph, config.

    Args:
        model: Hub id, checkpoint folder or (stateful) OpenVINO export folder.
        out: the repository folder; new or empty unless ``force``. Built beside it and moved into place.
        preset: weight compression, as in ``from_pretrained`` (default: int8 above 1B parameters).
        device: the device OVMS runs the model on (``CPU``, ``GPU``, ...); not checked against this machine.
        cache_size: KV cache in GB (0: OVMS grows it as needed).
        max_num_seqs: sequences OVMS generates for at once (continuous batching).
        enable_prefix_caching: reuse the KV cache of a repeated prompt start (chat histories).
        plugin_config: OpenVINO properties for OVMS (e.g. ``{"KV_CACHE_PRECISION": "u8"}``).
        name: the model name clients use (default: the model folder's or Hub id's last part).
        force: write into a non-empty ``out``.
        model_kwargs: further ``AutoModelForCausalLM.from_pretrained`` keywords (``revision``, ``lora``, ...).

    Example:
        >>> export_ovms("org/model", "models", preset="int4_asym_g64").commands()
    """
    target = Path(out)
    check_output(target, force)  # the cheap checks first: a refusal comes before the model loads
    name = model_name(model, name)
    graph = graph_text(device=device, cache_size=cache_size, max_num_seqs=max_num_seqs,
                       enable_prefix_caching=enable_prefix_caching, plugin_config=plugin_config or {})
    from ..model.modeling import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(model, preset=preset, stateful=True, compile=False,
                                                  **dict(model_kwargs or {}))
    with staging_folder(target) as tmp:
        folder = tmp / name
        loaded.save_pretrained(folder)
        missing = [f for f in (*IR_FILES, *TOKENIZER_FILES) if not (folder / f).is_file()]
        if missing:
            raise ExportError(
                f"the export of {os.fspath(model)!r} lacks {', '.join(missing)}: OVMS needs the OpenVINO tokenizer "
                "and detokenizer, and openvino_tokenizers could not convert this tokenizer. Nothing was written."
            )
        default_template = not _has_chat_template(folder)
        if default_template:
            (folder / CHAT_TEMPLATE_FILE).write_text(DEFAULT_CHAT_TEMPLATE, encoding="utf-8")
            warn(f"{os.fspath(model)!r} has no chat template; {CHAT_TEMPLATE_FILE} joins the messages' "
                 "contents (fine for /completions; replace it for chat).")
        (folder / GRAPH_FILE).write_text(graph, encoding="utf-8")
        config = _merged_config(target / CONFIG_FILE, name)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=4) + "\n", encoding="utf-8")
        publish(tmp, target)
    return OVMSExport(target, name, default_template)


def export_ir(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    preset: str | None = None,
    force: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
) -> Path:
    """Write an ov_causal export folder (IR, tokenizers, manifest) that every node of a cluster can load."""
    target = Path(out)
    check_output(target, force)  # before the model library is even imported
    from ..model.modeling import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(model, preset=preset, compile=False,
                                         **dict(model_kwargs or {})).save_pretrained(target)
    return target
