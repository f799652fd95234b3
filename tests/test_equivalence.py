"""OpenVINO output equals transformers output on the same weights, for every tested architecture."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer
from transformers import pipeline as hf_pipeline

from ov_causal import AutoModelForCausalLM

from .conftest import ARCHITECTURES

PROMPTS = ["def parse(args):", "import os\nclass Parser:\n    def __init__(self"]
GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)


def _tokenizer(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "left"
    return tok


def _pipe_ids(model, tok, prompts, **kwargs):
    pipe = hf_pipeline("text-generation", model=model, tokenizer=tok)
    out = pipe(prompts, return_tensors=True, **kwargs)
    return [o[0]["generated_token_ids"] for o in out]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pipeline_greedy_and_padded_batch_match_torch(arch, make_checkpoint, make_export, torch_model):
    ov = AutoModelForCausalLM.from_pretrained(make_export(arch), runtime="accuracy")
    tok = _tokenizer(make_checkpoint(arch))
    reference = _pipe_ids(torch_model(arch), tok, PROMPTS, **GREEDY)
    assert _pipe_ids(ov, tok, PROMPTS, **GREEDY) == reference
    assert _pipe_ids(ov, tok, PROMPTS, batch_size=2, **GREEDY) == _pipe_ids(
        torch_model(arch), tok, PROMPTS, batch_size=2, **GREEDY
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_beam_search_and_stateless_match_torch(arch, make_checkpoint, make_export, torch_model):
    tok = _tokenizer(make_checkpoint(arch))
    inputs = tok(PROMPTS, return_tensors="pt", padding=True)
    beams = dict(max_new_tokens=8, min_new_tokens=8, num_beams=3, do_sample=False)
    reference_beam = torch_model(arch).generate(**inputs, **beams)
    reference_greedy = torch_model(arch).generate(**inputs, **GREEDY)
    for stateful in (True, False):
        ov = AutoModelForCausalLM.from_pretrained(make_export(arch, stateful=stateful), runtime="accuracy")
        assert ov.stateful is stateful
        assert torch.equal(ov.generate(**inputs, **beams), reference_beam), f"beam search, stateful={stateful}"
        assert ov.last_engine == ("genai" if stateful else "optimum")
        assert torch.equal(ov.generate(**inputs, **GREEDY), reference_greedy), f"greedy, stateful={stateful}"


@pytest.mark.parametrize("stateful", [True, False])
def test_sampling_matches_torch_on_the_transformers_loop(stateful, make_checkpoint, make_export, torch_model):
    tok = _tokenizer(make_checkpoint("llama"))
    inputs = tok(PROMPTS[:1], return_tensors="pt")
    sample = dict(max_new_tokens=12, min_new_tokens=12, do_sample=True, top_k=20, temperature=0.9)
    ov = AutoModelForCausalLM.from_pretrained(
        make_export("llama", stateful=stateful), runtime="accuracy", backend="optimum"
    )
    torch.manual_seed(7)
    ours = ov.generate(**inputs, **sample)
    torch.manual_seed(7)
    reference = torch_model("llama").generate(**inputs, **sample)
    assert ours.shape == (1, inputs["input_ids"].shape[1] + 12)
    assert torch.equal(ours, reference) and ov.last_engine == "optimum"


def test_sampling_is_reproducible_on_the_genai_engine(make_checkpoint, make_export):
    tok = _tokenizer(make_checkpoint("llama"))
    inputs = tok(PROMPTS[:1], return_tensors="pt")
    sample = dict(max_new_tokens=12, min_new_tokens=12, do_sample=True, top_k=20, temperature=0.9)
    ov = AutoModelForCausalLM.from_pretrained(make_export("llama"), runtime="accuracy")
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append(ov.generate(**inputs, **sample))
    assert ov.last_engine == "genai"
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_logits_close_in_f32(make_checkpoint, make_export, torch_model):
    tok = _tokenizer(make_checkpoint("qwen2"))
    inputs = tok(PROMPTS[1:], return_tensors="pt")
    ov = AutoModelForCausalLM.from_pretrained(make_export("qwen2"), ov_config={"INFERENCE_PRECISION_HINT": "f32"})
    with torch.no_grad():
        reference = torch_model("qwen2")(**inputs).logits
    ours = ov(**inputs).logits
    torch.testing.assert_close(ours, reference, atol=2e-4, rtol=1e-4)
