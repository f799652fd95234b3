"""Batch generation on Ray Data: a local 2-CPU cluster, tiny models, a killed actor, the missing extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

MAX_NEW = 8


@pytest.fixture(scope="module")
def cluster():
    """A local cluster for this module (loopback only, no dashboard); actors inherit OV_CAUSAL_CACHE_DIR."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def checkpoint(make_checkpoint) -> Path:
    return make_checkpoint("llama")


def _prompts(n: int) -> list[str]:
    names = ("read", "write", "parse", "close", "open", "load", "dump", "join")
    return [f"def {names[i % len(names)]}_{i}(self, path):\n    " for i in range(n)]


def test_rows_in_order_with_counts_and_equal_to_plain_pipeline(cluster, checkpoint):
    import ov_causal
    from ov_causal.serving.ray_batch import generate_batch

    prompts = _prompts(12)
    rows = generate_batch(
        [{"id": f"r{i}", "prompt": p} for i, p in enumerate(prompts)], checkpoint,
        max_new_tokens=MAX_NEW, concurrency=2, batch_size=3,
    )
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(12)]
    assert [r["prompt"] for r in rows] == prompts

    pipe = ov_causal.pipeline("text-generation", checkpoint)
    tokenizer = pipe.tokenizer
    for row in rows:
        # token ids, not return_full_text=False: that strips len(prompt) characters from the decoded whole,
        # which differs from decoding the new tokens when a random model splits a UTF-8 character
        ids = pipe(row["prompt"], max_new_tokens=MAX_NEW, do_sample=False, return_tensors=True)[0]
        ids = list(ids["generated_token_ids"])
        prompt_length = len(tokenizer(row["prompt"])["input_ids"])
        assert row["prompt_tokens"] == prompt_length
        assert row["generated_tokens"] == len(ids) - prompt_length
        assert row["generated_text"] == tokenizer.decode(ids[prompt_length:], skip_special_tokens=True)
        assert 1 <= row["generated_tokens"] <= MAX_NEW
        assert isinstance(row["prompt_tokens"], int) and isinstance(row["generated_tokens"], int)


def test_dataset_in_dataset_out(cluster, checkpoint):
    from ov_causal.serving.ray_batch import generate_batch

    ds = ray.data.from_items([{"uid": i, "text": p} for i, p in enumerate(_prompts(6))])
    out = generate_batch(ds, checkpoint, prompt_column="text", max_new_tokens=4, batch_size=2)
    assert isinstance(out, ray.data.Dataset)
    rows = sorted(out.take_all(), key=lambda r: r["uid"])
    assert [r["uid"] for r in rows] == list(range(6))
    assert {"text", "generated_text", "prompt_tokens", "generated_tokens"} <= set(rows[0])


def test_killed_actor_is_retried_no_row_lost_or_duplicated(cluster, checkpoint, tmp_path):
    from ov_causal.serving.ray_batch import Generator

    marker = tmp_path / "killed-once"

    class DiesOnce(Generator):  # defined here so Ray pickles it by value
        def __call__(self, batch):
            out = super().__call__(batch)  # mid-batch: the work is done, the result not yet returned
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return out

    n = 40
    ds = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(_prompts(n))])
    out = ds.map_batches(
        DiesOnce, fn_constructor_kwargs={"model": checkpoint, "max_new_tokens": 4},
        compute=ray.data.ActorPoolStrategy(size=2), batch_size=5, batch_format="numpy", num_cpus=1,
        ray_remote_args_fn=lambda: {"max_restarts": 2, "max_task_retries": -1},
    )
    ids = [row["id"] for row in out.take_all()]
    assert marker.exists(), "no actor was killed: the test did not test anything"
    assert sorted(ids) == list(range(n))  # every row exactly once


def test_thousand_prompts(cluster, checkpoint):
    """The documented job size: 1,000 prompts on two actors (time printed with -s)."""
    from ov_causal.serving.ray_batch import generate_batch

    start = time.perf_counter()
    rows = generate_batch(_prompts(1000), checkpoint, max_new_tokens=16, concurrency=2, batch_size=50)
    seconds = time.perf_counter() - start
    print(f"\n1,000 prompts x 16 new tokens on 2 actors: {seconds:.1f} s")
    assert len(rows) == 1000 and all(r["generated_tokens"] >= 1 for r in rows)


def test_bad_data_is_refused(cluster, checkpoint):
    from ov_causal.errors import OptionError
    from ov_causal.serving.ray_batch import generate_batch

    with pytest.raises(OptionError, match="strings .prompts. or dicts with a 'prompt' key"):
        generate_batch([{"text": "x"}], checkpoint)
    with pytest.raises(OptionError, match="pass a ray.data.Dataset"):
        generate_batch("one prompt", checkpoint)


def test_missing_model_fails_before_ray_starts(tmp_path):
    from ov_causal.errors import ModelSourceError
    from ov_causal.serving.ray_batch import generate_batch

    with pytest.raises(ModelSourceError, match="does not exist"):
        generate_batch(["x"], tmp_path / "no-such-model")
    with pytest.raises(ModelSourceError, match="neither an OpenVINO export"):
        generate_batch(["x"], tmp_path)


def test_missing_column_names_the_columns(checkpoint):
    import numpy as np

    from ov_causal.errors import OptionError
    from ov_causal.serving.ray_batch import Generator

    gen = Generator(checkpoint, max_new_tokens=2)
    with pytest.raises(OptionError, match="no column 'prompt' .columns: text"):
        gen({"text": np.array(["a"], dtype=object)})
    out = gen({"prompt": np.array(["def f(x):"], dtype=object), "id": np.array([7])})
    assert out["id"].tolist() == [7] and out["generated_tokens"][0] >= 1


def test_missing_extra_names_it(monkeypatch):
    from ov_causal import MissingExtraError
    from ov_causal.serving.ray_batch import generate_batch

    for module in ("ray", "ray.data"):
        monkeypatch.setitem(sys.modules, module, None)  # what an interpreter without Ray sees: ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "ov_causal\[ray\]"') as info:
        generate_batch(["x"], "unused")
    assert isinstance(info.value, ImportError)


def test_import_does_not_import_ray():
    code = "import ov_causal, ov_causal.serving.ray_batch, ov_causal.serving.ovms, sys; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.fixture(scope="module")
def export(make_export) -> Path:
    from transformers import AutoTokenizer

    from ov_causal.model.backends import tokenizers_ready

    out = make_export("llama")
    assert tokenizers_ready(out, AutoTokenizer.from_pretrained(out))
    return out


@pytest.mark.parametrize("generate_kwargs",
                         [{}, {"stop_strings": ["\n"]}, {"repetition_penalty": 1.3, "min_new_tokens": 3}])
def test_ready_folder_runs_on_the_core_like_the_loaded_path(export, monkeypatch, generate_kwargs):
    import numpy as np

    import ov_causal.serving.batch_core
    from ov_causal.serving.ray_batch import Generator

    batch = {"prompt": np.array(_prompts(6), dtype=object)}
    on_core = Generator(export, max_new_tokens=MAX_NEW, generate_kwargs=generate_kwargs)
    assert on_core.core is not None
    rows = on_core(batch)
    on_core.core.close()
    monkeypatch.setattr(ov_causal.serving.batch_core, "core_batch", lambda *args: None)
    loaded = Generator(export, max_new_tokens=MAX_NEW, generate_kwargs=generate_kwargs)
    assert loaded.core is None
    expected = loaded(batch)
    for column in ("generated_text", "prompt_tokens", "generated_tokens"):
        assert rows[column].tolist() == expected[column].tolist(), column


def test_core_path_imports_no_torch(export):
    code = (
        "import sys, numpy as np\n"
        "from ov_causal.serving.ray_batch import Generator\n"
        f"gen = Generator({str(export)!r}, max_new_tokens=4, generate_kwargs={{'temperature': 0.7}}, do_sample=True)\n"
        "out = gen({'prompt': np.array(['def f(x):', 'import os'], dtype=object)})\n"
        "assert gen.core is not None and all(n >= 1 for n in out['generated_tokens']), out\n"
        "gen.core.close()\n"
        "loaded = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_unmapped_keywords_keep_the_loaded_path(export):
    from ov_causal.serving.ray_batch import Generator

    several = {"num_return_sequences": 2, "do_sample": True}
    assert Generator(export, max_new_tokens=2, generate_kwargs=several).core is None
    assert Generator(export, max_new_tokens=2, model_kwargs={"compile": True}).core is None


def test_one_thread_takes_the_core_only_where_it_runs(export):
    from ov_causal.serving.batch_core import core_batch

    greedy, bf16 = {"max_new_tokens": 2, "do_sample": False}, {"INFERENCE_PRECISION_HINT": "bf16",
                                                                  "KV_CACHE_PRECISION": "u8"}
    assert core_batch(export, {"ov_config": bf16}, greedy, 1) is None  # head size 32, bf16: GenAI crashes
    on_core = core_batch(export, {}, greedy, 1)  # an uncompressed folder runs in f32: one thread works
    assert on_core is not None and on_core.generate_many(["def f(x):"])[0][2] >= 1
    on_core.close()


def test_generate_batch_on_an_export_folder(cluster, export):
    """Actors of one Ray CPU each (INFERENCE_NUM_THREADS=1) on the core: the rows of the in-process core."""
    from ov_causal.serving.ray_batch import Generator, generate_batch

    prompts = _prompts(8)
    rows = generate_batch(prompts, export, max_new_tokens=MAX_NEW, concurrency=2, batch_size=4)
    local = Generator(export, max_new_tokens=MAX_NEW)
    expected = local.generate_many(prompts)
    local.core.close()
    assert [(r["generated_text"], r["prompt_tokens"], r["generated_tokens"]) for r in rows] == expected


# --- LoRA adapters served by name: a row picks its adapter through a column ---

LORA_TOKENS = 12
LORA_GREEDY = {"min_new_tokens": LORA_TOKENS}  # every row the same length: the fused texts compare whole


@pytest.fixture(scope="module")
def lora_adapters(make_checkpoint, tmp_path_factory):
    """Two PEFT adapters on the tiny llama (a: lora_alpha = 2 r; b: rank 8, other targets), as test_adapters."""
    from .test_lora import _make_adapter

    root = tmp_path_factory.mktemp("batch-adapters")
    return {"a": _make_adapter(make_checkpoint, root / "a", seed=1),
            "b": _make_adapter(make_checkpoint, root / "b", seed=2, rank=8,
                               targets=("q_proj", "k_proj", "up_proj", "o_proj"))}


@pytest.fixture(scope="module")
def fused_texts(make_checkpoint, lora_adapters, tmp_path_factory):
    """Each prompt's greedy text for the base and for each adapter's fused export (lora=), f32 runtime."""
    from ov_causal import AutoModelForCausalLM
    from ov_causal.model.text import eos_ids, new_tokens

    cache = tmp_path_factory.mktemp("batch-fused-cache")
    texts = {}
    for name, lora in {None: None, "a": lora_adapters["a"], "b": lora_adapters["b"]}.items():
        model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), lora=lora, runtime="accuracy",
                                                     ov_cache_dir=cache)
        eos = eos_ids(model.generation_config.eos_token_id)
        for prompt in _prompts(2):
            inputs = model.tokenizer([prompt], return_tensors="pt")
            out = model.generate(**inputs, max_new_tokens=LORA_TOKENS, do_sample=False, **LORA_GREEDY)
            tokens = new_tokens(out[0, inputs["input_ids"].shape[1]:].tolist(), eos, None)
            texts[name, prompt] = model.tokenizer.decode(tokens, skip_special_tokens=True)
    assert len({texts[n, p] for n in (None, "a", "b") for p in _prompts(2)}) == 6, "each adapter changes the text"
    return texts


def _lora_rows(export):
    """Rows for the base (no value, None, '', the base's name), adapter a and adapter b, interleaved."""
    picks = [None, "a", "b", "a", "", "b", export.name, "a", "b", None]
    rows = []
    for i, pick in enumerate(picks):
        row = {"id": i, "prompt": _prompts(2)[i % 2]}
        if i:  # the first row has no adapter key at all
            row["adapter"] = pick
        rows.append(row)
    return rows, [None if p in (None, "", export.name) else p for p in picks]


def test_generate_batch_serves_adapters_by_name(cluster, export, lora_adapters, fused_texts):
    """On the serving core (an export folder), in two actors: each row gets its own adapter's fused greedy text."""
    from ov_causal.serving.ray_batch import generate_batch

    rows, picks = _lora_rows(export)
    out = generate_batch(rows, export, max_new_tokens=LORA_TOKENS, generate_kwargs=LORA_GREEDY,
                         model_kwargs={"runtime": "accuracy"}, lora=lora_adapters, concurrency=2, batch_size=4)
    assert [r["id"] for r in out] == list(range(len(rows)))
    assert [r["generated_text"] for r in out] == [fused_texts[p, r["prompt"]] for p, r in zip(picks, rows)]


def test_loaded_model_serves_adapters_by_name(export, lora_adapters, fused_texts, monkeypatch):
    """Without the serving core (core_batch gives None): the model-level API, row groups per adapter."""
    import numpy as np

    import ov_causal.serving.batch_core
    from ov_causal.serving.ray_batch import Generator

    monkeypatch.setattr(ov_causal.serving.batch_core, "core_batch", lambda *args: None)
    gen = Generator(export, max_new_tokens=LORA_TOKENS, generate_kwargs=LORA_GREEDY,
                    model_kwargs={"runtime": "accuracy"}, lora={"a": lora_adapters["a"], "b": lora_adapters["b"]},
                    adapter_column="which")
    assert gen.core is None and gen.model.active_adapters() == ["a"]
    rows, picks = _lora_rows(export)
    batch = {"prompt": np.array([r["prompt"] for r in rows], dtype=object),
             "which": np.array([r.get("adapter") for r in rows], dtype=object)}
    out = gen(batch)
    assert out["generated_text"].tolist() == [fused_texts[p, r["prompt"]] for p, r in zip(picks, rows)]


def test_unknown_adapter_names_the_served_ones(cluster, export, lora_adapters, tmp_path):
    import numpy as np

    from ov_causal.errors import LoraError, OptionError
    from ov_causal.serving.ray_batch import Generator, generate_batch

    with pytest.raises(LoraError, match="adapter 'c', which this job does not serve.*Served adapters: 'a', 'b'"):
        generate_batch([{"prompt": "x", "adapter": "c"}], export, lora=lora_adapters)  # before the job runs
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(LoraError, match="adapter 'x' cannot be served: .* has no adapter_model"):
        generate_batch(["x"], export, lora={"x": tmp_path})  # checked against the export before the job
    with pytest.raises(LoraError, match="'y'.*not an adapter folder"):
        generate_batch(["x"], export, lora={"y": tmp_path / "missing"})
    gen = Generator(export, max_new_tokens=2, lora={"a": lora_adapters["a"]})
    try:
        with pytest.raises(LoraError, match="adapter 'b', which this job does not serve.*Served adapters: 'a'"):
            gen({"prompt": np.array(["x"], dtype=object), "adapter": np.array(["b"], dtype=object)})
        with pytest.raises(OptionError, match="no column 'adapter' .columns: prompt.*serves adapters by name .a."):
            gen({"prompt": np.array(["x"], dtype=object)})
    finally:
        gen.core.close()


def test_lora_folder_keeps_fusing(export, make_checkpoint, lora_adapters, fused_texts):
    """lora=folder is from_pretrained's lora=: fused at export, every row runs the fused model (no column needed)."""
    from ov_causal.serving.batch_adapters import split_lora
    from ov_causal.serving.ray_batch import Generator

    assert split_lora(str(lora_adapters["a"]), {}) == ((), {"lora": str(lora_adapters["a"])})
    assert split_lora({"a": lora_adapters["a"]}, {}) == ((("a", str(lora_adapters["a"])),), {})
    gen = Generator(make_checkpoint(), max_new_tokens=LORA_TOKENS, generate_kwargs=LORA_GREEDY,
                    model_kwargs={"runtime": "accuracy"}, lora=lora_adapters["b"])
    assert gen.core is None and not gen.served
    prompt = _prompts(1)[0]
    assert gen.generate_many([prompt])[0][0] == fused_texts["b", prompt]
