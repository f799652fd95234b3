"""A ready folder (export folder, or a checkpoint's cached export) runs on GenAI alone: no torch import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ov_causal import AutoModelForCausalLM
from ov_causal.model.ready import find_ready, ready_folder, torch_seed_draw
from ov_causal.model.run import DEMO_MODEL, DEMO_PROMPT, _generate_loaded, generate

ROOT = Path(__file__).resolve().parent.parent  # cwd of the subprocesses: this checkout's ov_causal runs
HEAVY = ("torch", "transformers", "optimum", "nncf")
WRAPPER = f"""import sys
from ov_causal.cli import main
status = main(sys.argv[1:])
print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))
sys.exit(status)
"""


def _cli(*args: str) -> tuple[str, list[str]]:
    """Run ``ov-causal`` in a fresh process: (its stdout without the report line, heavy modules it imported)."""
    result = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, timeout=600,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "tokens/s" in result.stderr and "model ready in" in result.stderr
    text, _, report = result.stdout.rpartition("HEAVY ")
    return text, eval(report)  # noqa: S307 - our own wrapper's printed list


def test_generate_on_an_export_folder_imports_no_torch(make_export):
    folder = make_export("llama")
    text, heavy = _cli("generate", "def f(x):", "--model", str(folder), "--max-new-tokens", "8")
    assert heavy == []
    assert text.startswith("def f(x):") and len(text) > len("def f(x):\n")


def test_the_demo_models_cached_export_imports_no_torch():
    _cli("generate", "--max-new-tokens", "4")  # exports into the session's cache if not there yet
    assert ready_folder(DEMO_MODEL) is not None
    text, heavy = _cli("generate", "--max-new-tokens", "8")
    assert heavy == [] and text.startswith(DEMO_PROMPT)


@pytest.mark.parametrize("do_sample", [False, True])
def test_the_ready_path_gives_the_output_of_the_loaded_model(do_sample):
    AutoModelForCausalLM.from_pretrained(str(DEMO_MODEL))  # the export is cached
    ready = generate(max_new_tokens=24, do_sample=do_sample, seed=5)
    loaded = _generate_loaded(DEMO_PROMPT, None, None, None, "CPU", 24, do_sample, 5)
    assert (ready.text, ready.new_tokens) == (loaded.text, loaded.new_tokens)
    assert ready.text and ready.tokens_per_second > 0 and ready.load_seconds > 0


def test_ready_properties_are_the_loaded_models_ov_config(make_export):
    model = AutoModelForCausalLM.from_pretrained(str(DEMO_MODEL))
    ready = find_ready(DEMO_MODEL)
    assert ready.folder == Path(model.model_save_dir) and ready.properties == model.ov_config
    assert "CACHE_DIR" in ready.properties  # compiled blobs beside the entry: fast later starts
    folder = make_export("llama")
    model = AutoModelForCausalLM.from_pretrained(str(folder), runtime="memory")
    ready = find_ready(folder, runtime="memory")
    assert ready.folder == folder and ready.properties == model.ov_config
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}  # the user's key, and the exact runtime it calls for
    model = AutoModelForCausalLM.from_pretrained(str(folder), ov_config=f32)
    ready = find_ready(folder, ov_config=f32)
    assert ready.properties == model.ov_config and ready.properties["KV_CACHE_PRECISION"] == "f32"


def test_what_is_not_ready(make_checkpoint, make_export, tmp_path):
    assert find_ready(make_checkpoint("gpt2"), ov_cache_dir=tmp_path) is None  # never exported there
    folder = make_export("llama")
    assert find_ready(folder, preset="int8") is None  # compressing it is from_pretrained's job
    bare = tmp_path / "no-ov-tokenizer"
    shutil.copytree(folder, bare, ignore=shutil.ignore_patterns("openvino_*tokenizer*"))
    assert find_ready(bare) is None
    assert find_ready(make_export("llama", stateful=False)) is None  # GenAI needs the stateful form


def test_a_damaged_cache_entry_is_not_ready():
    folder = ready_folder(str(DEMO_MODEL)) or Path(AutoModelForCausalLM.from_pretrained(str(DEMO_MODEL)).model_save_dir)
    config = folder / "config.json"
    original = config.read_bytes()
    try:
        config.write_bytes(original + b" ")
        assert ready_folder(str(DEMO_MODEL)) is None
    finally:
        config.write_bytes(original)
    assert ready_folder(str(DEMO_MODEL)) == folder


@pytest.mark.parametrize("seed", [0, 1, 42, 2**33 + 7, -5])
def test_the_sampling_seed_follows_torch_manual_seed(seed):
    torch.manual_seed(seed)
    assert torch_seed_draw(seed) == int(torch.randint(0, 2**31 - 1, (1,)).item())
