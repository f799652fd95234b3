"""Side-by-side decode speed on the demo model: transformers (torch fp32) vs ov_causal presets.

Each engine generates the same greedy continuation several times in this one process; the table
shows medians and the ratio to transformers. Usage:

    python scripts/compare_demo.py --runs 5 --new-tokens 64 --json demo-speed.json
"""

from __future__ import annotations

import argparse
import json

PROMPT = "def read_config(path):\n    "


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM as TorchModel

    from ov_causal import DEMO_MODEL, AutoModelForCausalLM
    from ov_causal.tools.evaluate import decode_speed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--presets", default="default,int8,int4_asym_g64")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    inputs = AutoTokenizer.from_pretrained(DEMO_MODEL)([PROMPT], return_tensors="pt")
    engines = [("transformers fp32", TorchModel.from_pretrained(DEMO_MODEL, dtype="float32").eval())]
    for name in args.presets.split(","):
        model = AutoModelForCausalLM.from_pretrained(DEMO_MODEL, preset=None if name == "default" else name)
        engines.append((f"ov_causal {name} ({model.ov_manifest.preset}, {model.ov_runtime.name})", model))
    rows = []
    for label, model in engines:
        with torch.no_grad():
            speed = decode_speed(model, inputs, args.new_tokens, args.runs)
        rows.append({"engine": label, "median_tok_s": speed})
    base = rows[0]["median_tok_s"]
    print(f"{'engine':44s} {'median tok/s':>12s} {'vs transformers':>16s}")
    for row in rows:
        row["ratio"] = row["median_tok_s"] / base
        print(f"{row['engine']:44s} {row['median_tok_s']:12.1f} {row['ratio']:15.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"new_tokens": args.new_tokens, "runs": args.runs, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
