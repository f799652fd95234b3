"""The registry of engines under test (bench and memory share it) and its pieces, without a model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ov_causal import OptionError
from ov_causal.model.backends import tokenized_inputs
from ov_causal.tools.runners import ENGINES, BackendView, greedy, load_runner

ROOT = Path(__file__).resolve().parents[1]


class _Model:
    """Records the backend each generate call ran with."""

    def __init__(self, backend: str, fail: bool = False) -> None:
        self.backend, self.fail, self.seen = backend, fail, []

    def generate(self, **kwargs):
        self.seen.append(self.backend)
        if self.fail:
            raise RuntimeError("boom")
        return kwargs


@pytest.mark.parametrize("before", ["auto", "genai", "optimum"])
def test_backend_view_restores_the_models_own_setting(before):
    model = _Model(before)
    optimum, genai = BackendView(model, "optimum"), BackendView(model, "genai")
    assert optimum.generate(**greedy(4)) == {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
    genai.generate(input_ids=None)
    optimum.generate(input_ids=None)
    assert model.seen == ["optimum", "genai", "optimum"] and model.backend == before
    model.fail = True
    with pytest.raises(RuntimeError, match="boom"):
        optimum.generate()
    assert model.backend == before


def test_unknown_engine_and_missing_checkpoint_are_refused():
    with pytest.raises(OptionError, match=r"unknown engine\(s\) 'llama.cpp': use a subset of ov_causal-genai"):
        load_runner("llama.cpp", "folder")
    with pytest.raises(OptionError, match="transformers engine needs checkpoint="):
        load_runner("transformers", "folder")
    from ov_causal.tools.bench import bench

    with pytest.raises(OptionError, match="unknown engine"):
        bench("no/such-model", engines=("ov_causal-genai", "llm_pipeline"))
    assert ENGINES[0] == "ov_causal-genai" and len(set(ENGINES)) == 5


def test_tokenized_inputs_from_numpy_and_torch():
    import torch

    ids = np.array([[5, 6, 7]], dtype=np.int32)
    for given in (ids, torch.tensor(ids)):
        inputs = tokenized_inputs(given)
        assert inputs.input_ids.data.dtype == np.int64 and inputs.input_ids.data.tolist() == [[5, 6, 7]]
        assert inputs.attention_mask.data.tolist() == [[1, 1, 1]]
    masked = tokenized_inputs(torch.tensor([[1, 2]]), torch.tensor([[0, 1]]))
    assert masked.attention_mask.data.tolist() == [[0, 1]]


def test_the_memory_child_imports_no_torch():
    code = "import sys, ov_causal.tools.memory, ov_causal.tools.runners; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"
