"""One API, two engines: GenAI serves what maps to it, the transformers loop the rest; same tokens either way."""

from __future__ import annotations

import pytest
import torch
from transformers import TextIteratorStreamer, TextStreamer

import ov_causal
from ov_causal import AutoModelForCausalLM, OptionError
from ov_causal.model.run import DEMO_MODEL

GREEDY = dict(max_new_tokens=16, min_new_tokens=16, do_sample=False)


@pytest.fixture(scope="module")
def demo():
    return AutoModelForCausalLM.from_pretrained(DEMO_MODEL, runtime="accuracy")


@pytest.fixture(scope="module")
def reference():
    from transformers import AutoModelForCausalLM as TorchModel

    return TorchModel.from_pretrained(DEMO_MODEL, dtype="float32").eval()


def _inputs(model, *prompts):
    tok = model.tokenizer
    tok.padding_side = "left"
    return tok(list(prompts), return_tensors="pt", padding=True)


def test_engines_agree_with_each_other_and_with_torch(demo, reference):
    inputs = _inputs(demo, "def main(argv):\n", "import os\nimport sys\n\n\nclass Config:\n")
    expected = reference.generate(**inputs, **GREEDY)
    demo.backend = "optimum"
    assert torch.equal(demo.generate(**inputs, **GREEDY), expected) and demo.last_engine == "optimum"
    demo.backend = "auto"
    assert torch.equal(demo.generate(**inputs, **GREEDY), expected) and demo.last_engine == "genai"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        (dict(output_scores=True, return_dict_in_generate=True), "output_scores"),
        (dict(bad_words_ids=[[5]]), "bad_words_ids"),
        (dict(typical_p=0.5, do_sample=True), "typical_p"),
    ],
)
def test_arguments_only_transformers_has_fall_back(demo, kwargs, reason):
    inputs = _inputs(demo, "x = ")
    demo.generate(**inputs, max_new_tokens=4, **kwargs)
    assert demo.last_engine == "optimum" and reason in demo.last_engine_reason
    demo.backend = "genai"
    try:
        with pytest.raises(OptionError, match=f"backend='genai' cannot serve '{reason}"):
            demo.generate(**inputs, max_new_tokens=4, **kwargs)
    finally:
        demo.backend = "auto"


def test_custom_logits_processor_falls_back(demo):
    from transformers import LogitsProcessorList, MinLengthLogitsProcessor

    inputs = _inputs(demo, "x = ")
    processors = LogitsProcessorList([MinLengthLogitsProcessor(3, eos_token_id=0)])
    demo.generate(**inputs, max_new_tokens=4, logits_processor=processors)
    assert demo.last_engine == "optimum" and "logits_processor" in demo.last_engine_reason


def test_mapped_arguments_give_the_same_tokens_on_both_engines(demo):
    inputs = _inputs(demo, "def read(path):\n    with open(path")
    cases = [
        dict(max_new_tokens=12, repetition_penalty=1.3),
        dict(max_new_tokens=12, no_repeat_ngram_size=2),
        dict(max_new_tokens=10, num_beams=3, num_return_sequences=2, length_penalty=0.8),
        dict(max_length=inputs["input_ids"].shape[1] + 8),
        dict(max_new_tokens=12, min_new_tokens=12, eos_token_id=[0, 64]),
    ]
    for case in cases:
        demo.backend = "optimum"
        expected = demo.generate(**inputs, **case)
        demo.backend = "auto"
        assert torch.equal(demo.generate(**inputs, **case), expected), case
        assert demo.last_engine == "genai"


def test_eos_and_padding_like_transformers(demo):
    inputs = _inputs(demo, "def f(x):\n    return x\n", "import os\n")
    demo.backend = "optimum"
    free_run = demo.generate(**inputs, **GREEDY)
    eos = int(free_run[0, inputs["input_ids"].shape[1] + 3])  # make the 4th new token of row 0 an end token
    expected = demo.generate(**inputs, max_new_tokens=16, eos_token_id=eos, pad_token_id=1)
    demo.backend = "auto"
    ours = demo.generate(**inputs, max_new_tokens=16, eos_token_id=eos, pad_token_id=1)
    assert demo.last_engine == "genai"
    assert torch.equal(ours, expected)


def test_stop_strings(demo):
    inputs = _inputs(demo, "def f(x):\n")
    demo.backend = "optimum"
    expected = demo.generate(**inputs, max_new_tokens=24, stop_strings=["return"], tokenizer=demo.tokenizer)
    demo.backend = "auto"
    ours = demo.generate(**inputs, max_new_tokens=24, stop_strings=["return"], tokenizer=demo.tokenizer)
    assert demo.last_engine == "genai"
    assert demo.tokenizer.decode(ours[0]) == demo.tokenizer.decode(expected[0])


def test_streaming_with_transformers_streamers(demo, capsys):
    inputs = _inputs(demo, "class Parser:\n")
    expected = demo.tokenizer.decode(demo.generate(**inputs, **GREEDY)[0, inputs["input_ids"].shape[1]:])
    streamer = TextStreamer(demo.tokenizer, skip_prompt=True)
    demo.generate(**inputs, streamer=streamer, **GREEDY)
    assert demo.last_engine == "genai"
    assert capsys.readouterr().out.strip() == expected.strip()
    iterator = TextIteratorStreamer(demo.tokenizer, skip_prompt=True)
    demo.generate(**inputs, streamer=iterator, **GREEDY)
    assert "".join(iterator).strip() == expected.strip()


def test_pipeline_lists_and_chat_messages(demo):
    pipe = ov_causal.pipeline("text-generation", model=demo)
    prompts = ["def main(", "import os\n", "class A:\n    def __init__(self"]
    batched = pipe(prompts, batch_size=2, max_new_tokens=8, do_sample=False)
    singles = [pipe(p, max_new_tokens=8, do_sample=False) for p in prompts]
    assert batched == singles and demo.last_engine == "genai"
    assert [b[0]["generated_text"][: len(p)] for b, p in zip(batched, prompts)] == prompts
    assert pipe(prompts[0], max_new_tokens=4, return_full_text=False)[0]["generated_text"]


def test_prompt_lookup_keeps_greedy_output(demo):
    code = "def load(path):\n    with open(path) as f:\n        return f.read()\n\n\n"
    inputs = _inputs(demo, code + code.replace("load", "read"))
    plain = demo.generate(**inputs, **GREEDY)
    lookup = demo.generate(**inputs, prompt_lookup_num_tokens=4, max_matching_ngram_size=2, **GREEDY)
    assert demo.last_engine == "genai" and torch.equal(lookup, plain)


def test_assistant_model_keeps_greedy_output(demo, make_export):
    draft = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset="int8", runtime="accuracy", compile=False)
    inputs = _inputs(demo, "def main(argv):\n")
    plain = demo.generate(**inputs, **GREEDY)
    assisted = demo.generate(**inputs, assistant_model=draft, **GREEDY)
    assert demo.last_engine == "genai" and torch.equal(assisted, plain)


def test_presence_penalty_only_on_genai_and_bad_backend(demo):
    inputs = _inputs(demo, "x = ")
    demo.generate(**inputs, max_new_tokens=4, presence_penalty=0.5)
    assert demo.last_engine == "genai"
    with pytest.raises(OptionError, match="presence_penalty= exists only in the GenAI engine"):
        demo.generate(**inputs, max_new_tokens=4, presence_penalty=0.5, output_scores=True,
                      return_dict_in_generate=True)
    with pytest.raises(OptionError, match="backend='fast' is not valid"):
        AutoModelForCausalLM.from_pretrained(DEMO_MODEL, backend="fast")


def test_bench_measures_every_engine_and_reports_failures(tmp_path):
    import json

    from ov_causal.tools.bench import bench

    report = bench(DEMO_MODEL, ["int8", "int9"], runs=2, new_tokens=8, prompt_tokens=16, num_prompts=2,
                   ov_cache_dir=tmp_path)
    assert [r.engine for r in report.rows] == ["ov_causal-genai", "ov_causal-optimum", "llm-pipeline",
                                               "optimum-intel", "transformers"]
    assert "decode vs llm-pipeline" in report.summary("int8")
    assert "int9" in report.failures and "FAILED int9" in report.table()
    genai = report.rows[0]
    assert genai.ttft_prefix_s is not None and genai.decode_tok_s.low <= genai.decode_tok_s.median
    assert report.bandwidth_gb_s > 0 and set(report.ratios("int8")) >= {"ov_causal-genai", "optimum-intel"}
    data = json.loads(report.to_json(tmp_path / "bench.json"))
    assert data["rows"][0]["engine"] == "ov_causal-genai"
    report.plot(tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_bench_cli_prints_its_table_and_nothing_from_other_libraries():
    """Offline (HF_HUB_OFFLINE=1), optimum-intel used to look the export folder up as a Hub id and log "Could not
    infer whether the model was already converted" with a Hub-cache ``[Errno 2]``; transformers drew its own
    weight-loading bar. With our bars off, stderr stays empty; the table carries the thorough-run flags and peak
    memory."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", OV_CAUSAL_PROGRESS="0")
    done = subprocess.run([sys.executable, "-m", "ov_causal", "bench", str(DEMO_MODEL), "--runs", "1", "--new-tokens",
                           "4", "--prompt-tokens", "8", "--num-prompts", "2"],
                          capture_output=True, text=True, timeout=900, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert done.stdout.startswith("engine ") and "optimum-intel" in done.stdout and "transformers" in done.stdout
    assert "quick run: 1 runs, 2 prompts per batch; for the thorough run: --runs 7 --num-prompts 16" in done.stdout
    peak = next(line for line in done.stdout.splitlines() if line.startswith("peak memory (RSS)"))
    assert float(peak.split(": ")[1].split()[0]) > 100


def test_chat_messages_through_the_pipeline(make_checkpoint):
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(make_checkpoint(), runtime="accuracy")
    tok = AutoTokenizer.from_pretrained(make_checkpoint())
    tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    pipe = ov_causal.pipeline("text-generation", model=model, tokenizer=tok)
    messages = [{"role": "user", "content": "def parse(args):"}]
    out = pipe(messages, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert model.last_engine == "genai"
    reply = out[0]["generated_text"][-1]
    assert reply["role"] == "assistant" and reply["content"]
    model.backend = "optimum"
    assert pipe(messages, max_new_tokens=6, min_new_tokens=6, do_sample=False) == out


def test_dataset_and_generator_inputs_keep_input_order(demo):
    from transformers.pipelines.pt_utils import KeyDataset

    pipe = ov_causal.pipeline("text-generation", model=demo)
    prompts = ["def main(", "import os\n", "class A:\n", "for i in range(", "return self."]
    expected = [pipe(p, max_new_tokens=6, do_sample=False) for p in prompts]
    rows = [{"text": p, "id": i} for i, p in enumerate(prompts)]
    from_dataset = list(pipe(KeyDataset(rows, "text"), batch_size=2, max_new_tokens=6, do_sample=False))
    assert from_dataset == expected and demo.last_engine == "genai"
    from_generator = list(pipe((p for p in prompts), batch_size=3, max_new_tokens=6, do_sample=False))
    assert from_generator == expected and demo.last_engine == "genai"


def test_folder_without_openvino_tokenizers(make_export, tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "no-ov-tokenizer"
    shutil.copytree(make_export("llama"), folder)
    for name in ("openvino_tokenizer.xml", "openvino_tokenizer.bin", "openvino_detokenizer.xml",
                 "openvino_detokenizer.bin"):
        (folder / name).unlink(missing_ok=True)
    model = AutoModelForCausalLM.from_pretrained(folder, runtime="accuracy")
    inputs = _inputs(model, "def parse(")
    converted = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert model.last_engine == "genai" and (folder / "openvino_tokenizer.xml").is_file()

    for name in ("openvino_tokenizer.xml", "openvino_detokenizer.xml"):
        (folder / name).unlink()
    monkeypatch.setattr("ov_causal.convert.export.convert_tokenizer", lambda tokenizer, out: False)
    fallback = AutoModelForCausalLM.from_pretrained(folder, runtime="accuracy")
    with pytest.warns(UserWarning, match="no OpenVINO tokenizer and none could be converted"):
        out = fallback.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert fallback.last_engine == "optimum" and torch.equal(out, converted)


def test_transformers_pipeline_accepts_our_class_without_an_error_log(demo, capfd):
    from transformers import pipeline

    capfd.readouterr()
    pipe = pipeline("text-generation", model=demo, tokenizer=demo.tokenizer)
    assert "is not supported for text-generation" not in capfd.readouterr().err
    assert pipe("def f(", max_new_tokens=3, do_sample=False)[0]["generated_text"].startswith("def f(")


def test_bench_peak_rss_per_engine_in_fresh_processes(tmp_path):
    from ov_causal.tools.bench import bench

    report = bench(DEMO_MODEL, ["int8"], runs=1, new_tokens=4, prompt_tokens=8, num_prompts=2, ov_cache_dir=tmp_path,
                   engines=("ov_causal-genai", "llm-pipeline"), peak_rss=True)
    rss = {r.engine: r.peak_rss_mib for r in report.rows}
    assert not report.failures and all(v and v > 20 for v in rss.values())
    # GenAI alone imports neither torch nor transformers: its process is the lighter one.
    assert rss["llm-pipeline"] < rss["ov_causal-genai"]
    assert "RSS MiB" in report.table() and report.to_pandas()["peak_rss_mib"].notna().all()
