"""The load plan: what ``from_pretrained`` would load, decided once without torch, and the keywords it shows."""

from __future__ import annotations

import inspect
import pydoc
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from ov_causal import AutoModelForCausalLM
from ov_causal.config.hub import OV_KEYWORDS
from ov_causal.errors import OptionError
from ov_causal.model.load_request import LoadOptions
from ov_causal.model.modeling import OVModelForCausalLM, load_model
from ov_causal.model.plan import READY_KEYWORDS, plan_load

ROOT = Path(__file__).resolve().parent.parent
SHOWN = ("preset", "runtime", "lora", "ov_config", "device", "compile", "export", "load_in_8bit", "quantization_config")
ENTRY_POINTS = (AutoModelForCausalLM.from_pretrained, OVModelForCausalLM.from_pretrained, load_model)


def _keywords(function) -> dict[str, tuple]:
    return {p.name: (p.kind, p.default, p.annotation) for p in inspect.signature(function).parameters.values()
            if p.name != "pretrained_model_name_or_path"}


@pytest.mark.parametrize("function", ENTRY_POINTS, ids=("auto", "ov_class", "load_model"))
def test_from_pretrained_shows_its_keywords(function):
    parameters = inspect.signature(function).parameters
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in SHOWN)
    assert parameters["preset"].default is None and parameters["device"].default == "CPU"
    assert "Preset" in str(parameters["preset"].annotation)
    assert next(iter(parameters)) == "pretrained_model_name_or_path" and "kwargs" in parameters
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)
    for name in SHOWN:
        assert f"{name}:" in text  # in the signature and in the Args


def test_the_torch_free_keywords_are_load_models():
    ours = {name: value for name, value in _keywords(load_model).items() if name != "kwargs"}
    options = {f.name: (inspect.Parameter.KEYWORD_ONLY, f.default, f.type) for f in fields(LoadOptions)}
    assert options == ours  # names, defaults and annotations: the defaults are LoadOptions'
    assert READY_KEYWORDS <= set(options)
    assert set(OV_KEYWORDS) == set(options)  # the names an unknown keyword is told


def test_load_options_are_checked_once_when_built():
    assert LoadOptions(device=" cpu ").device == "CPU"
    assert LoadOptions(ov_config={"INFERENCE_NUM_THREADS": 2}).ov_config == {"INFERENCE_NUM_THREADS": "2"}
    with pytest.raises(OptionError, match="backend='gena' is not valid"):
        LoadOptions(backend="gena")
    with pytest.raises(OptionError, match="ov_config must be a dict"):
        LoadOptions(ov_config=["PERFORMANCE_HINT"])
    options, kwargs = LoadOptions.split({"preset": "int8", "revision": "main"})
    assert options.preset == "int8" and kwargs == {"revision": "main"}


def test_an_unknown_keyword_is_still_refused_with_a_suggestion(make_export):
    with pytest.raises(OptionError, match="unknown keyword 'presett'. Did you mean 'preset'"):
        AutoModelForCausalLM.from_pretrained(str(make_export("llama")), presett="int8")
    with pytest.raises(OptionError, match="Did you mean 'runtime'"):
        plan_load(make_export("llama"), runtim="memory")


READY_VALUES = {
    "preset": "int8",
    "runtime": "memory",
    "device": "cpu",
    "ov_config": {"INFERENCE_PRECISION_HINT": "f32"},
    "ov_cache_dir": None,  # a folder of the test's own (tmp_path)
    "backend": "genai",
}


@pytest.mark.parametrize("keyword", sorted(READY_KEYWORDS))
def test_the_plans_folder_is_the_one_from_pretrained_loads(keyword, make_checkpoint, tmp_path):
    value = tmp_path if keyword == "ov_cache_dir" else READY_VALUES[keyword]
    checkpoint = make_checkpoint("llama")
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), compile=False, **{keyword: value})
    plan = plan_load(checkpoint, **{keyword: value})
    assert plan.folder == Path(model.model_save_dir), plan.reason
    assert plan.properties == dict(model.ov_config) and plan.device == model.device_name
    assert plan.source.kind == "checkpoint" and plan.runtime == model.ov_runtime


def test_what_the_plan_leaves_to_from_pretrained(make_export):
    folder = make_export("llama")
    assert plan_load(folder).ready
    plan = plan_load(folder, load_tokenizer=False)
    assert not plan.ready and "load_tokenizer" in plan.reason and plan.resolved is None
    assert "auto" in plan_load(folder, preset="auto").reason
    assert "optimum" in plan_load(folder, backend="optimum").reason
    plan = plan_load(folder, preset="int8")
    assert not plan.ready and "preset" in plan.reason and plan.request.name == "int8"


def test_a_plan_for_an_export_folder_imports_no_torch(make_export):
    script = ("import sys; from ov_causal.model.plan import plan_load\n"
              f"plan = plan_load({str(make_export('llama'))!r}, runtime='throughput')\n"
              "print(plan.ready, sorted(m for m in ('torch', 'transformers', 'optimum', 'nncf') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "[]"]
