"""16 prompts through a pipeline: ov_causal vs ``transformers.pipeline`` on raw optimum-intel vs GenAI.

Generated tokens/s for one call with 16 fresh text prompts (~73 tokens each, 32 new tokens, greedy):
``ov_causal.pipeline(prompts, batch_size=16)``, ``transformers.pipeline`` over a raw
``OVModelForCausalLM`` with the same batch size, and ``openvino_genai.LLMPipeline.generate(list)``,
all on the same export folder, in a shuffled order per run, medians.

    python scripts/pipeline_throughput.py /path/to/export-folder --runs 5
    (an export folder: e.g. `ov-causal export /path/to/checkpoint out --preset int8`)
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

import ov_causal
from ov_causal import DEMO_MODEL

NAMES = ("transformers.pipeline on raw optimum-intel", "ov_causal.pipeline", "LLMPipeline.generate(list)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="an OpenVINO export folder (with OpenVINO tokenizers)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()

    import openvino_genai
    from optimum.intel import OVModelForCausalLM
    from transformers import pipeline

    ours = ov_causal.AutoModelForCausalLM.from_pretrained(args.folder)
    tok = ours.tokenizer
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    config = dict(ours.ov_config)
    raw = pipeline("text-generation", model=OVModelForCausalLM.from_pretrained(args.folder, export=False,
                                                                               ov_config=config), tokenizer=tok)
    mine = ov_causal.pipeline("text-generation", model=ours, tokenizer=tok)
    genai = openvino_genai.LLMPipeline(args.folder, "CPU", **config)
    genai_config = openvino_genai.GenerationConfig(max_new_tokens=32, min_new_tokens=32)
    genai_config.apply_chat_template = False
    greedy = dict(max_new_tokens=32, min_new_tokens=32, do_sample=False)
    text = (Path(DEMO_MODEL) / "heldout.txt").read_text(encoding="utf-8")
    rng = random.Random(0)

    def fresh() -> list[str]:
        starts = [rng.randrange(0, len(text) - 5000) for _ in range(args.prompts)]
        return [tok.decode(tok(text[i: i + 2000], add_special_tokens=False)["input_ids"][:73]) for i in starts]

    def tokens_per_s(name: str, prompts: list[str]) -> float:
        start = time.perf_counter()
        if name == NAMES[0]:
            raw(prompts, batch_size=len(prompts), **greedy)
        elif name == NAMES[1]:
            mine(prompts, batch_size=len(prompts), **greedy)
        else:
            genai.generate(prompts, genai_config)
        return len(prompts) * 32 / (time.perf_counter() - start)

    for name in NAMES:  # warm-up
        tokens_per_s(name, fresh())
    results: dict[str, list[float]] = {name: [] for name in NAMES}
    for run in range(args.runs):
        prompts = fresh()
        for name in random.Random(run).sample(NAMES, len(NAMES)):
            results[name].append(tokens_per_s(name, prompts))
    base = statistics.median(results[NAMES[0]])
    print(f"| {args.prompts} prompts, 32 new tokens | generated tok/s | range | vs transformers.pipeline |")
    print("|---|---|---|---|")
    for name in NAMES:
        median = statistics.median(results[name])
        print(f"| {name} | {median:.1f} | {min(results[name]):.1f}-{max(results[name]):.1f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
