"""Prompt-lookup decoding vs plain greedy on the demo model: speed, and whether the output is identical.

Prompt lookup drafts the next tokens by finding the last n-gram earlier in the prompt (or output) and
verifies them in one pass: it pays off when the model copies from its input. Each case alternates
plain and prompt-lookup calls (median of --runs), same process.

    python scripts/prompt_lookup.py --runs 7
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from ov_causal import DEMO_MODEL, AutoModelForCausalLM


def cases() -> dict[str, str]:
    held_out = (Path(DEMO_MODEL) / "heldout.txt").read_text(encoding="utf-8")[5000:6500]
    modules = ["os", "sys", "re", "io", "json", "time", "math", "types", "string", "random"]
    fields = ["name", "path", "mode", "size", "kind", "data", "flags", "parent", "children"]
    return {
        "import list, continue it": "".join(f"import {m}\n" for m in modules) + "import ",
        "attribute copies, continue them": "".join(f"        self.{f} = {f}\n" for f in fields) + "        self.",
        "repeated assert lines": "        self.assertEqual(result.value, expected.value)\n" * 12,
        "held-out code, then 'the same code again'": held_out + "\n\n# The same code again, unchanged:\n"
        + held_out[:300],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--num-tokens", type=int, default=8, help="prompt_lookup_num_tokens")
    parser.add_argument("--ngram", type=int, default=3, help="max_matching_ngram_size")
    args = parser.parse_args()

    model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, runtime="accuracy")  # f32 KV: exact greedy identity
    greedy = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    lookup = dict(greedy, prompt_lookup_num_tokens=args.num_tokens, max_matching_ngram_size=args.ngram)
    print("| input | prompt tokens | identical output | greedy tok/s | prompt lookup tok/s | speedup |")
    print("|---|---|---|---|---|---|")
    for name, prompt in cases().items():
        ids = model.tokenizer(prompt, return_tensors="pt")
        same = torch.equal(model.generate(**ids, **greedy), model.generate(**ids, **lookup))
        times: dict[str, list[float]] = {"greedy": [], "lookup": []}
        for run in range(args.runs):
            for kind in (("greedy", "lookup") if run % 2 else ("lookup", "greedy")):
                start = time.perf_counter()
                model.generate(**ids, **(greedy if kind == "greedy" else lookup))
                times[kind].append(time.perf_counter() - start)
        plain, fast = statistics.median(times["greedy"]), statistics.median(times["lookup"])
        print(f"| {name} | {ids['input_ids'].shape[1]} | {'yes' if same else 'NO'} | {args.new_tokens / plain:.0f} "
              f"| {args.new_tokens / fast:.0f} | {plain / fast:.2f}x |")


if __name__ == "__main__":
    main()
