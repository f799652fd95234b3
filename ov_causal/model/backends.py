"""Two engines behind ``model.generate()``: OpenVINO GenAI's C++ loop, or the transformers loop (optimum-intel).

The GenAI engine serves a call when every generation setting in it has a GenAI equivalent; anything
only transformers has (a logits processor, output_scores, bad_words_ids, ...) goes to the
transformers loop. Both return what ``transformers`` returns: a [batch * num_return_sequences, length]
tensor of prompt + new tokens, right-padded with the pad token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config.sampling import SamplingParams
from ..convert.cache import compiling, genai_properties
from ..convert.cache_locks import hold_entry
from ..convert.sources import DETOKENIZER_FILE, TOKENIZER_FILE
from ..errors import LoraError, OptionError, warn

Backend = Literal["auto", "genai", "optimum"]
BACKENDS = ("auto", "genai", "optimum")

# transformers GenerationConfig attributes with a GenAI equivalent (mapped in ``genai_config``).
MAPPED = {
    "max_new_tokens", "max_length", "min_new_tokens", "min_length", "do_sample", "temperature", "top_k", "top_p",
    "min_p", "repetition_penalty", "no_repeat_ngram_size", "num_beams", "num_beam_groups", "diversity_penalty",
    "length_penalty", "early_stopping", "num_return_sequences", "eos_token_id", "stop_strings",
    "prompt_lookup_num_tokens", "max_matching_ngram_size", "num_assistant_tokens",
}
# Attributes that do not change which tokens come out.
NEUTRAL = {
    "pad_token_id", "bos_token_id", "use_cache", "cache_implementation", "transformers_version", "_from_model_config",
    "return_dict_in_generate", "output_attentions", "output_hidden_states", "num_assistant_tokens_schedule",
    "assistant_confidence_threshold", "decoder_start_token_id", "_commit_hash", "cache_config",
    "assistant_lookbehind", "target_lookbehind", "is_assistant",
}
# Values that leave the output as it is (transformers fills some of them in for its pipelines).
NO_OP = {"typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "encoder_repetition_penalty": 1.0,
         "guidance_scale": 1.0}

# Keywords of generate() itself (not GenerationConfig attributes) that GenAI can serve.
CALL_KEYWORDS = {"input_ids", "attention_mask", "generation_config", "streamer", "assistant_model", "tokenizer",
                 "position_ids", "presence_penalty", "frequency_penalty", "response_format"}
# Of those, the ones only GenAI has: the transformers loop refuses them.
GENAI_ONLY = ("presence_penalty", "frequency_penalty", "response_format")


@dataclass(frozen=True)
class Plan:
    """Which engine serves a call, and why (the first setting only transformers has)."""

    engine: Literal["genai", "optimum"]
    reason: str = ""
    config: Any = None  # the effective transformers GenerationConfig of the call


def effective_config(model: Any, kwargs: dict[str, Any]) -> Any:
    """The transformers GenerationConfig a call would use: the model's (or the passed one) updated by kwargs."""
    import copy

    base = kwargs.get("generation_config") or model.generation_config
    config = copy.deepcopy(base)
    config.update(**{k: v for k, v in kwargs.items() if k not in CALL_KEYWORDS})
    return config


def plan(model: Any, kwargs: dict[str, Any], backend: Backend) -> Plan:
    """Decide the engine for a ``generate`` call, and why: the call's settings first, then the model's state.

    ``backend='genai'`` with a setting GenAI has not raises; a model GenAI cannot run (a stateless export, a
    replaced ``model.model``, no OpenVINO tokenizer) goes to the transformers loop whatever the backend.
    """
    config = effective_config(model, kwargs)
    if backend == "optimum":
        return Plan("optimum", "backend='optimum'", config)
    unsupported = _transformers_only(kwargs, config)
    if unsupported:
        if backend == "genai":
            raise OptionError(
                f"backend='genai' cannot serve {unsupported[0]!r}: OpenVINO GenAI has no equivalent. "
                "Use backend='auto' (falls back to the transformers loop) or drop that argument."
            )
        return Plan("optimum", f"{unsupported[0]} is only supported by the transformers loop", config)
    reason = model_not_for_genai(model)
    return Plan("optimum", reason, config) if reason else Plan("genai", config=config)


def _transformers_only(kwargs: dict[str, Any], config: Any) -> list[str]:
    """The call's settings that only the transformers loop has."""
    from transformers import GenerationConfig

    unsupported = [k for k, v in kwargs.items() if k not in CALL_KEYWORDS and v is not None
                   and not hasattr(GenerationConfig(), k)]
    defaults = GenerationConfig().to_dict()
    for key, value in config.to_dict().items():
        if key in MAPPED or key in NEUTRAL or value == defaults.get(key, value) or value == NO_OP.get(key):
            continue
        if value is None or value is False or value == [] or value == {} or value == 0:
            continue
        unsupported.append(key)
    if config.return_dict_in_generate or config.output_scores or config.output_logits:
        unsupported.append("return_dict_in_generate/output_scores")
    input_ids = kwargs.get("input_ids")
    if input_ids is None:
        unsupported.append("inputs_embeds (no input_ids)")
    elif kwargs.get("streamer") is not None and (input_ids.shape[0] > 1 or (config.num_beams or 1) > 1):
        unsupported.append("streamer with a batch or beam search")
    return unsupported


def model_not_for_genai(model: Any) -> str:
    """Why the GenAI engine cannot run this model as it is now ('' when it can; the engine is then built)."""
    if not model.stateful:
        return "a stateless export (GenAI needs the stateful form)"
    if model.ov_model_replaced:
        return "model.model was changed since loading (GenAI runs the saved folder)"
    if model._genai_engine() is None:
        return "the export has no OpenVINO tokenizer, so GenAI cannot run it"
    return ""


def genai_config(config: Any, prompt_length: int, kwargs: dict[str, Any], rng_seed: int | None = None) -> Any:
    """The ``openvino_genai.GenerationConfig`` equivalent to a transformers GenerationConfig.

    ``config`` needs only the attributes read here (a namespace works); sampling draws its seed from
    torch's generator unless ``rng_seed`` is given (``config.sampling.rng_seed``).
    """
    constraint = None
    if kwargs.get("response_format") is not None:
        from .structured import constraint as compile_format

        constraint = compile_format(kwargs["response_format"])
    return SamplingParams.from_transformers(
        config, prompt_length, seed=rng_seed, presence_penalty=kwargs.get("presence_penalty"),
        frequency_penalty=kwargs.get("frequency_penalty"), constraint=constraint,
        assistant=kwargs.get("assistant_model") is not None,
    ).to_genai()


class TokenStreamer:
    """Feeds GenAI's tokens to a transformers streamer (``TextStreamer``, ``TextIteratorStreamer``).

    A streamer whose ``stop_requested`` attribute turns true (a client that went away) stops the
    generation at the next token; the tokens so far are returned.
    """

    def __new__(cls, hf_streamer: Any) -> Any:
        import openvino_genai
        import torch

        class _Streamer(openvino_genai.StreamerBase):
            def write(self, token: Any) -> Any:
                tokens = token if isinstance(token, list) else [token]
                hf_streamer.put(torch.tensor(tokens, dtype=torch.long))
                if getattr(hf_streamer, "stop_requested", False):
                    return openvino_genai.StreamingStatus.STOP
                return openvino_genai.StreamingStatus.RUNNING

            def end(self) -> None:
                hf_streamer.end()

        return _Streamer()


class GenAIEngine:
    """LLMPipelines over a model's export folder: plain, prompt lookup, or with a draft model (built lazily)."""

    def __init__(self, folder: Path, device: str, properties: dict[str, str], adapters: Any = None) -> None:
        self.folder = folder
        self.device = device
        self.properties = genai_properties(properties, device)  # no CACHE_DIR blob on CPU: never read back
        self._hold = hold_entry(folder)  # the size cap does not evict an entry an engine runs from
        self.adapters = adapters  # the model's AdapterRegistry (model/adapters.py), or None
        self._pipelines: dict[tuple[str, Any], Any] = {}

    def _plain_key(self) -> tuple[str, Any]:
        """The plain pipeline's key: what it was built with for the run-time adapters (None: without any)."""
        wanted = self.adapters.signature() if self.adapters is not None else None
        for mode, built in self._pipelines:
            serves = built == wanted or (self.adapters is not None and self.adapters.serves(built, wanted))
            if mode == "plain" and serves:
                return mode, built
        return "plain", wanted

    def pipeline(self, mode: str = "plain", draft: Path | None = None) -> Any:
        import openvino_genai

        key = self._plain_key() if mode == "plain" else (mode, str(draft))
        if key not in self._pipelines:
            options: dict[str, Any] = dict(self.properties)
            if mode == "prompt_lookup":
                options["prompt_lookup"] = True
            elif mode == "draft":
                options["draft_model"] = openvino_genai.draft_model(str(draft), self.device)
            elif self.adapters is not None:
                options.update(self.adapters.pipeline_options(key[1]))
            with compiling(self.properties, self.device):  # its compiled blob is written under the cache entry's lock
                pipeline = openvino_genai.LLMPipeline(str(self.folder), self.device, **options)
            if mode == "plain":  # one compiled plain pipeline at a time (the old one stays if the build fails)
                for old in [k for k in self._pipelines if k[0] == "plain"]:
                    del self._pipelines[old]
            self._pipelines[key] = pipeline
        return self._pipelines[key]

    def generate(self, input_ids: Any, attention_mask: Any, config: Any, kwargs: dict[str, Any]) -> Any:
        """Run GenAI and return the transformers-shaped output tensor."""
        options = genai_config(config, input_ids.shape[1], kwargs)
        assistant = kwargs.get("assistant_model")
        active = self.adapters.effective() if self.adapters is not None else {}
        if active and (config.prompt_lookup_num_tokens or assistant is not None):
            raise LoraError(f"adapter(s) {', '.join(active)} are active, and prompt lookup / assistant_model run in "
                            "pipelines without run-time adapters: call disable_adapters() first, or fuse the "
                            "adapter before export (from_pretrained(base, lora=folder)).")
        if config.prompt_lookup_num_tokens:
            pipe = self.pipeline("prompt_lookup")
        elif assistant is not None:
            pipe = self.pipeline("draft", _model_folder(assistant))
        else:
            pipe = self.pipeline()
            adapters = self.adapters.call_config(self._plain_key()[1]) if self.adapters is not None else None
            if adapters is not None:
                options.adapters = adapters  # every call sets them: an unset value keeps the previous call's
        inputs = tokenized_inputs(input_ids, attention_mask)
        streamer = kwargs.get("streamer")
        if streamer is not None:
            streamer.put(input_ids.cpu())
        result = pipe.generate(inputs, options, streamer=TokenStreamer(streamer) if streamer is not None else None)
        self.last_perf_metrics = result.perf_metrics
        pad = config.pad_token_id if config.pad_token_id is not None else options.eos_token_id
        return _assemble(input_ids, result.tokens, options.num_return_sequences, pad)


def tokenized_inputs(input_ids: Any, attention_mask: Any = None) -> Any:
    """GenAI's ``TokenizedInputs`` from [batch, length] token ids and mask (torch tensors or NumPy arrays;
    no mask: every position attended), as int64 tensors."""
    import numpy as np
    import openvino
    import openvino_genai

    ids = np.ascontiguousarray(input_ids, dtype=np.int64)
    mask = np.ones_like(ids) if attention_mask is None else np.ascontiguousarray(attention_mask, dtype=np.int64)
    return openvino_genai.TokenizedInputs(openvino.Tensor(ids), openvino.Tensor(mask))


def _model_folder(model: Any) -> Path:
    if isinstance(model, (str, Path)):
        return Path(model)
    folder = getattr(model, "model_save_dir", None)
    if folder is None:
        raise OptionError(
            "assistant_model= must be an ov_causal model or the path of an OpenVINO export folder for the GenAI "
            "engine; pass backend='optimum' to use a torch assistant."
        )
    return Path(folder)


def _assemble(input_ids: Any, sequences: list[list[int]], per_prompt: int, pad: int) -> Any:
    """Prompt rows (repeated per returned sequence) + new tokens, right-padded like transformers."""
    import torch

    longest = max((len(s) for s in sequences), default=0)
    new = torch.full((len(sequences), longest), pad if pad is not None else 0, dtype=torch.long)
    for row, tokens in enumerate(sequences):
        new[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    prompts = input_ids.repeat_interleave(per_prompt, dim=0)
    return torch.cat([prompts, new], dim=1)


def check_backend(backend: str) -> Backend:
    if backend not in BACKENDS:
        raise OptionError(f"backend={backend!r} is not valid: use one of {', '.join(BACKENDS)}.")
    return backend  # type: ignore[return-value]


def has_ov_tokenizers(folder: Path) -> bool:
    """Whether the folder holds the OpenVINO tokenizer and detokenizer GenAI needs."""
    return (folder / TOKENIZER_FILE).is_file() and (folder / DETOKENIZER_FILE).is_file()


def tokenizers_ready(folder: Path, tokenizer: Any) -> bool:
    """GenAI needs openvino_tokenizer/detokenizer in the folder; convert them on the spot when possible."""
    if has_ov_tokenizers(folder):
        return True
    if tokenizer is not None:
        from ..convert.export import convert_tokenizer

        try:
            if convert_tokenizer(tokenizer, folder):
                return True
        except OSError:
            pass
    warn(
        f"{folder} has no OpenVINO tokenizer and none could be converted: generation uses the transformers loop."
    )
    return False
