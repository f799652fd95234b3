"""The engines ``bench`` and ``memory`` measure, in one registry, and the greedy call they all get.

Every runner has ``generate(input_ids=..., attention_mask=..., max_new_tokens=..., min_new_tokens=...,
do_sample=False)``. Engines: ov_causal on GenAI (``backend='genai'``), ov_causal on the transformers
loop (``backend='optimum'``), raw ``openvino_genai.LLMPipeline`` and raw optimum-intel
``OVModelForCausalLM`` on the same exported folder, and plain transformers + torch (fp32) on the
checkpoint. Nothing here imports torch until an engine that needs it is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import OptionError

ENGINES = ("ov_causal-genai", "ov_causal-optimum", "llm-pipeline", "optimum-intel", "transformers")
OV_CAUSAL_ENGINES = {"ov_causal-genai": "genai", "ov_causal-optimum": "optimum"}  # engine -> model.backend


def greedy(new_tokens: int) -> dict[str, Any]:
    """``generate`` keywords for greedy decoding of exactly ``new_tokens`` tokens."""
    return dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)


def check_engines(engines: Sequence[str]) -> None:
    """Refuse engine names not in ``ENGINES``."""
    unknown = [e for e in engines if e not in ENGINES]
    if unknown:
        raise OptionError(f"unknown engine(s) {', '.join(map(repr, unknown))}: use a subset of {', '.join(ENGINES)}.")


class RawLLMPipeline:
    """``openvino_genai.LLMPipeline`` called directly with token ids: the engine without our wrapper."""

    def __init__(self, folder: str | os.PathLike[str], device: str, properties: Mapping[str, str]) -> None:
        import openvino_genai

        from ..convert.cache import genai_properties

        self.pipe = openvino_genai.LLMPipeline(str(folder), device, **genai_properties(properties, device))

    def generate(self, input_ids: Any, attention_mask: Any = None, *, max_new_tokens: int, min_new_tokens: int,
                 do_sample: bool = False) -> Any:
        """Greedy generation; ``input_ids`` may be a torch tensor or a NumPy array (no torch needed)."""
        import openvino_genai

        from ..model.backends import tokenized_inputs

        config = openvino_genai.GenerationConfig(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
        return self.pipe.generate(tokenized_inputs(input_ids, attention_mask), config)


class BackendView:
    """An ov_causal model run on one engine (``backend``) for each call; the model's own setting is restored
    after the call, so one model can be measured on both engines."""

    def __init__(self, model: Any, backend: str) -> None:
        self.model = model
        self.backend = backend

    def generate(self, **kwargs: Any) -> Any:
        previous = self.model.backend
        self.model.backend = self.backend
        try:
            return self.model.generate(**kwargs)
        finally:
            self.model.backend = previous


def _ov_causal(folder: Any, device: str, ov_config: Mapping[str, str]) -> Any:
    from ..model.modeling import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, device=device, ov_config=dict(ov_config) or None)


def _optimum_intel(folder: Any, device: str, ov_config: Mapping[str, str]) -> Any:
    from optimum.intel import OVModelForCausalLM

    from ..config.hub import quiet_offline_folder_check

    with quiet_offline_folder_check():  # offline, optimum looks the local folder up as a Hub id first
        return OVModelForCausalLM.from_pretrained(str(folder), export=False, device=device, ov_config=dict(ov_config))


def _transformers(checkpoint: Any) -> Any:
    from transformers import AutoModelForCausalLM as TorchModel

    if checkpoint is None:
        raise OptionError("the transformers engine needs checkpoint= (a transformers checkpoint: an OpenVINO "
                          "export folder has no torch weights).")

    with _no_weight_loading_bar():
        return TorchModel.from_pretrained(checkpoint, dtype="float32").eval()


@contextmanager
def _no_weight_loading_bar() -> Iterator[None]:
    """Without transformers' "Loading weights" bar: the tools show their own progress (logs and warnings stay)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load_runner(engine: str, folder: str | os.PathLike[str] | None, device: str = "CPU",
                ov_config: Mapping[str, str] | None = None, *, checkpoint: str | os.PathLike[str] | None = None,
                model: Any = None) -> Any:
    """The runner of ``engine``.

    Args:
        engine: one of ``ENGINES``.
        folder: the exported OpenVINO folder (every OpenVINO engine; unused by ``transformers``).
        ov_config: OpenVINO properties for the OpenVINO engines.
        checkpoint: the transformers checkpoint (the ``transformers`` engine).
        model: an ov_causal model already loaded on ``folder``, shared by the ov_causal engines
            (loaded here when None).
    """
    check_engines([engine])
    properties = dict(ov_config or {})
    if engine in OV_CAUSAL_ENGINES:
        shared = model if model is not None else _ov_causal(folder, device, properties)
        return BackendView(shared, OV_CAUSAL_ENGINES[engine])
    loaders: dict[str, Callable[[], Any]] = {
        "llm-pipeline": lambda: RawLLMPipeline(folder, device, properties),
        "optimum-intel": lambda: _optimum_intel(folder, device, properties),
        "transformers": lambda: _transformers(checkpoint),
    }
    return loaders[engine]()
