"""The one sampling mapping (``config.sampling``): transformers' settings and OpenAI requests -> ``SamplingParams``
-> GenAI's GenerationConfig, and the seed rules. No model is loaded here."""

from __future__ import annotations

import subprocess
import sys

import openvino_genai
import pytest
from transformers import GenerationConfig

from ov_causal.config.sampling import SEED_RANGE, SamplingParams, rng_seed, torch_seed_draw
from ov_causal.errors import OptionError
from ov_causal.model.backends import genai_config
from ov_causal.model.structured import constraint

FIELDS = ("max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p",
          "repetition_penalty", "presence_penalty", "frequency_penalty", "no_repeat_ngram_size",
          "num_return_sequences", "num_beams", "num_beam_groups", "diversity_penalty", "length_penalty",
          "stop_criteria", "eos_token_id", "stop_token_ids", "stop_strings", "include_stop_str_in_output",
          "rng_seed", "num_assistant_tokens", "max_ngram_size")


def _values(config):
    return {name: getattr(config, name) for name in FIELDS}


def _folder_config(**settings):
    """What a served folder's config holds: its eos id (generation_config.json) and GenAI's defaults."""
    config = openvino_genai.GenerationConfig()
    config.eos_token_id, config.stop_token_ids = 2, {2}
    for name, value in settings.items():
        setattr(config, name, value)
    return config


def test_from_transformers_greedy_maps_lengths_eos_stops_and_penalties():
    config = GenerationConfig(max_length=30, min_length=12, eos_token_id=[2, 7], stop_strings="\n\n",
                              repetition_penalty=1.3, no_repeat_ngram_size=3)
    params = SamplingParams.from_transformers(config, prompt_length=10, presence_penalty=0.5,
                                              frequency_penalty=-1, constraint={"regex": "[ab]+"})
    assert params == SamplingParams(max_new_tokens=20, min_new_tokens=2, do_sample=False, repetition_penalty=1.3,
                                    presence_penalty=0.5, frequency_penalty=-1, no_repeat_ngram_size=3,
                                    num_return_sequences=1, eos_token_ids=(2, 7), stop_strings=("\n\n",),
                                    constraint={"regex": "[ab]+"})
    out = params.to_genai()
    assert (out.max_new_tokens, out.min_new_tokens, out.do_sample) == (20, 2, False)
    assert (out.eos_token_id, out.stop_token_ids) == (2, {2, 7})
    assert (out.stop_strings, out.include_stop_str_in_output) == ({"\n\n"}, True)
    assert out.repetition_penalty == pytest.approx(1.3) and out.no_repeat_ngram_size == 3
    assert (out.presence_penalty, out.frequency_penalty) == (0.5, -1.0)
    assert out.structured_output_config is not None


def test_from_transformers_sampling_and_seed():
    config = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=0.7, top_k=40, top_p=0.9, min_p=0.05,
                              num_return_sequences=3, eos_token_id=2)
    params = SamplingParams.from_transformers(config, seed=123)
    assert (params.do_sample, params.temperature, params.top_k, params.top_p, params.min_p, params.seed) == (
        True, 0.7, 40, 0.9, 0.05, 123)
    out = params.to_genai()
    assert (out.do_sample, out.top_k, out.num_return_sequences, out.rng_seed) == (True, 40, 3, 123)
    assert (out.temperature, out.top_p, out.min_p) == pytest.approx((0.7, 0.9, 0.05))
    unset = SamplingParams.from_transformers(GenerationConfig(do_sample=True, top_k=None, top_p=None,
                                                              temperature=None))
    assert (unset.temperature, unset.top_k, unset.top_p, unset.min_p) == (1.0, 0, 1.0, None)
    assert unset.seed is not None  # drawn when the call is mapped (rng_seed(follow_torch=True))


@pytest.mark.parametrize("early, criteria", [(True, "EARLY"), (False, "HEURISTIC"), ("never", "NEVER")])
def test_from_transformers_beam_search(early, criteria):
    config = GenerationConfig(num_beams=4, num_beam_groups=2, diversity_penalty=0.5, length_penalty=0.8,
                              early_stopping=early, do_sample=True, num_return_sequences=2)
    params = SamplingParams.from_transformers(config)
    assert (params.do_sample, params.seed, params.temperature) == (False, None, None)  # beams win over sampling
    out = params.to_genai()
    assert (out.num_beams, out.num_beam_groups, out.num_return_sequences, out.do_sample) == (4, 2, 2, False)
    assert (out.diversity_penalty, out.length_penalty) == pytest.approx((0.5, 0.8))
    assert out.stop_criteria == getattr(openvino_genai.StopCriteria, criteria)


def test_from_transformers_prompt_lookup_and_assistant():
    lookup = SamplingParams.from_transformers(GenerationConfig(prompt_lookup_num_tokens=4))
    assert (lookup.num_assistant_tokens, lookup.max_ngram_size) == (4, 2)
    assert (lookup.to_genai().num_assistant_tokens, lookup.to_genai().max_ngram_size) == (4, 2)
    draft = SamplingParams.from_transformers(GenerationConfig(), assistant=True)
    assert (draft.num_assistant_tokens, draft.max_ngram_size) == (5, None)
    assert SamplingParams.from_transformers(GenerationConfig()).num_assistant_tokens is None


def test_from_openai_sets_only_what_the_request_sets():
    assert SamplingParams.from_openai() == SamplingParams()
    greedy = SamplingParams.from_openai(max_tokens=5, temperature=0)
    assert (greedy.max_new_tokens, greedy.do_sample, greedy.temperature) == (5, False, None)
    params = SamplingParams.from_openai(max_tokens=9, temperature=0.5, top_p=0.8, n=2, stop=["x", "y"], seed=-1,
                                        presence_penalty=1, frequency_penalty=-0.5, constraint={"grammar": "g"})
    assert params == SamplingParams(max_new_tokens=9, do_sample=True, temperature=0.5, top_p=0.8,
                                    num_return_sequences=2, stop_strings=("x", "y"), seed=-1, presence_penalty=1.0,
                                    frequency_penalty=-0.5, constraint={"grammar": "g"})
    assert SamplingParams.from_openai(n=1).num_return_sequences is None


def test_from_openai_on_a_base_keeps_its_defaults():
    base = openvino_genai.GenerationConfig(max_new_tokens=99, eos_token_id=2, do_sample=True, temperature=0.6,
                                           top_k=20)
    out = SamplingParams.from_openai(max_tokens=7, top_p=0.5, seed=-1).to_genai(base)
    assert out is base  # changed in place
    assert (out.max_new_tokens, out.eos_token_id, out.do_sample, out.top_k) == (7, 2, True, 20)
    assert (out.temperature, out.top_p) == pytest.approx((0.6, 0.5))
    assert out.rng_seed == SEED_RANGE - 1  # OpenAI's signed seed, GenAI's unsigned
    greedy = SamplingParams.from_openai(temperature=0, top_p=0.5, seed=3).to_genai(
        openvino_genai.GenerationConfig(do_sample=True, top_p=1.0))
    assert (greedy.do_sample, greedy.top_p) == (False, 1.0)  # top_p and seed apply only when sampling
    assert SamplingParams.from_openai(n=2).sampled(base) and not SamplingParams.from_openai(temperature=0).sampled(base)


def test_both_paths_give_the_same_generation_config():
    hf = GenerationConfig(max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9, top_k=0,
                          num_return_sequences=2, stop_strings=["\n"], eos_token_id=2)
    from_hf = genai_config(hf, 5, {"presence_penalty": 0.5, "frequency_penalty": 0.25,
                                   "response_format": {"type": "json_object"}}, rng_seed=2**63 + 5)
    base = _folder_config(top_k=0)
    from_openai = SamplingParams.from_openai(
        max_tokens=12, temperature=0.7, top_p=0.9, n=2, stop=["\n"], seed=-(2**63) + 5, presence_penalty=0.5,
        frequency_penalty=0.25, constraint=constraint({"type": "json_object"}),
    ).to_genai(base)
    assert _values(from_hf) == _values(from_openai)
    assert from_hf.rng_seed == 2**63 + 5
    greedy_hf = genai_config(GenerationConfig(max_new_tokens=4, eos_token_id=2), 3, {})
    greedy_openai = SamplingParams.from_openai(max_tokens=4, temperature=0).to_genai(_folder_config())
    assert _values(greedy_hf) == _values(greedy_openai)


def test_seed_rules():
    assert rng_seed(5) == 5 and rng_seed(2**63 - 1) == 2**63 - 1 and rng_seed(2**64 - 1) == 2**64 - 1
    assert rng_seed(-1) == SEED_RANGE - 1 and rng_seed(-(2**63)) == 2**63
    assert rng_seed(7, follow_torch=True) == torch_seed_draw(7)  # seed = torch.manual_seed(seed)
    drawn = {rng_seed() for _ in range(4)}
    assert len(drawn) == 4 and all(0 <= s < SEED_RANGE for s in drawn)
    for bad in (2**64, -(2**63) - 1, 1.5, True, "3"):
        with pytest.raises(OptionError, match="seed="):
            rng_seed(bad)


def test_seed_follows_torch_global_generator():
    import torch

    torch.manual_seed(11)
    first = rng_seed(follow_torch=True)
    torch.manual_seed(11)
    assert rng_seed(follow_torch=True) == first == torch_seed_draw(11)
    torch.manual_seed(11)
    config = GenerationConfig(do_sample=True, max_new_tokens=3)
    assert genai_config(config, 1, {}).rng_seed == first  # transformers.set_seed makes GenAI sampling repeat


@pytest.mark.parametrize("field, value", [
    ("max_new_tokens", -1), ("min_new_tokens", 1.5), ("temperature", -0.1), ("temperature", float("nan")),
    ("top_p", 1.5), ("top_k", -3), ("min_p", 2.0), ("repetition_penalty", 0.0), ("num_return_sequences", 0),
    ("num_beams", 0), ("presence_penalty", float("inf")), ("early_stopping", "sometimes"), ("seed", 2**64),
    ("stop_strings", ("",)), ("eos_token_ids", (-1,)),
])
def test_invalid_settings_are_refused(field, value):
    with pytest.raises(OptionError, match=field.rstrip("s") if field.endswith("_ids") else field):
        SamplingParams(**{field: value})


def test_importing_the_mapping_loads_neither_torch_nor_genai():
    code = ("import sys; from ov_causal.config.sampling import SamplingParams, rng_seed; "
            "SamplingParams.from_openai(max_tokens=3, temperature=0.5, seed=-2); rng_seed(); "
            "rng_seed(follow_torch=True); rng_seed(4, follow_torch=True); "
            "print(sorted({'torch', 'openvino_genai', 'transformers', 'openvino'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
