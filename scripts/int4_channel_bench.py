"""int4 per channel against int8 and int4 g128: the accuracy price (``ov-causal eval``) and the decode speed.

For each model:
(a) accuracy: ``evaluate()`` (what ``ov-causal eval`` runs): perplexity change, top-1 agreement and KL against
    the same checkpoint exported in fp32, on held-out text (default: the demo model's held-out Python source);
    data-aware presets calibrate on the demo model's calibration text (kept apart from the held-out text);
(b) speed: every preset compiled at once (``latency`` runtime, INFERENCE_NUM_THREADS=2), then ``--runs``
    rounds in a new shuffled order each, on a fresh random prompt per round: time to first token (1 new token)
    and the time of ``--new-tokens`` tokens; decode tok/s = (new tokens - 1) / (t_all - t_first). Medians;
(c) bytes read per decode step (``ov_causal.tools.traffic``: MatMul weights with scales + KV cache at the
    middle of the answer) x decode tok/s = achieved GB/s, against this machine's read bandwidth (numpy sum).

Models: ``smollm2`` (SmolLM2-135M-Instruct from the test suite's cache; its weights were Q4_1 before we
dequantized them, so int4 looks deceptively lossless on it), ``demo`` (ov_causal.DEMO_MODEL, trained here
on Python source: no such caveat), ``random-1b`` (a 1B-class random Llama: speed only, accuracy meaningless).

Usage:

    OV_CAUSAL_CACHE_DIR=/tmp/int4-cache python scripts/int4_channel_bench.py --models demo,smollm2,random-1b \\
        --runs 7 --json int4-channel.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PRESETS = ("int8", "int4_sym_g128", "int4_asym_g128", "int4_sym_channel", "int4_asym_channel",
           "int4_sym_channel_r80", "int4_sym_channel_awq", "int4_sym_channel_gptq", "int4_sym_channel_all")
THREADS = {"INFERENCE_NUM_THREADS": "2"}


def checkpoint(name: str, work: Path) -> Path:
    """The checkpoint folder of a model name (or a path)."""
    from ov_causal import DEMO_MODEL

    if name == "demo":
        return DEMO_MODEL
    if name == "smollm2":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from smollm2 import checkpoint as smollm2

        return smollm2()
    if name == "random-1b":
        from ov_causal.tools.bench import build_random_checkpoint

        out = work / "random-1b"
        return out if (out / "config.json").is_file() else build_random_checkpoint(out, hidden=2048, layers=16)
    return Path(name)


def export_folders(model: Path, presets: list[str], calibration: Path) -> dict[str, Path]:
    """preset -> exported folder (compressed once, then cached)."""
    from ov_causal import PRESETS as ALL
    from ov_causal import AutoModelForCausalLM

    folders = {}
    for preset in presets:
        data_aware = ALL[preset].compression.data_aware
        loaded = AutoModelForCausalLM.from_pretrained(model, preset=preset, compile=False, load_tokenizer=False,
                                                      calibration=str(calibration) if data_aware else None)
        folders[preset] = Path(loaded.model_save_dir)
    return folders


def _timed(model: Any, prompt: dict[str, Any], new_tokens: int) -> float:
    from ov_causal.tools.runners import greedy

    start = time.perf_counter()
    model.generate(**prompt, **greedy(new_tokens))
    return time.perf_counter() - start


def speeds(folders: dict[str, Path], runs: int, prompt_tokens: int, new_tokens: int) -> dict[str, dict[str, float]]:
    """Median TTFT (s) and decode tok/s per preset, every preset loaded, shuffled order each round."""
    import torch

    from ov_causal import AutoModelForCausalLM

    models = {p: AutoModelForCausalLM.from_pretrained(f, runtime="latency", ov_config=THREADS, load_tokenizer=False)
              for p, f in folders.items()}
    vocab = json.loads((next(iter(folders.values())) / "config.json").read_text())["vocab_size"]
    gen = torch.Generator().manual_seed(0)

    def fresh() -> dict[str, Any]:
        ids = torch.randint(2, vocab, (1, prompt_tokens), generator=gen)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    for model in models.values():  # warm-up
        _timed(model, fresh(), new_tokens)
    ttft: dict[str, list[float]] = {p: [] for p in models}
    decode: dict[str, list[float]] = {p: [] for p in models}
    for i in range(runs):
        prompt_one, prompt_all = fresh(), fresh()
        for preset in random.Random(i).sample(list(models), len(models)):
            first = _timed(models[preset], prompt_one, 1)
            whole = _timed(models[preset], prompt_all, new_tokens)
            ttft[preset].append(first)
            decode[preset].append((new_tokens - 1) / max(whole - first, 1e-9))
        print(f"  speed round {i + 1}/{runs} done", file=sys.stderr, flush=True)
    return {p: {"ttft_s": statistics.median(ttft[p]), "decode_tok_s": statistics.median(decode[p]),
                "decode_low": min(decode[p]), "decode_high": max(decode[p])} for p in models}


def accuracy(model: Path, presets: list[str], calibration: Path, max_tokens: int) -> dict[str, dict[str, float]]:
    """``evaluate()``'s accuracy columns per preset (fp32 reference, default held-out text)."""
    from ov_causal.tools.evaluate import evaluate

    report = evaluate(model, presets, calibration=calibration, max_tokens=max_tokens, num_prompts=4)
    print(report.table())
    return {r.preset: {"ppl": r.perplexity, "ppl_change": r.ppl_change, "top1": r.top1_agreement, "kl": r.mean_kl,
                       "first_divergence": r.first_divergence, "ir_mib": r.ir_mib} for r in report.rows}


def traffic(folders: dict[str, Path], context: int) -> dict[str, dict[str, float]]:
    """Weight and KV bytes one decode step reads at ``context`` tokens, per preset."""
    from ov_causal.tools.traffic import folder_weight_bytes, kv_bytes_per_token

    return {p: {"weight_mib": folder_weight_bytes(f) / 2**20, "kv_mib": context * kv_bytes_per_token(f) / 2**20}
            for p, f in folders.items()}


def table(name: str, rows: dict[str, dict[str, Any]], bandwidth: float) -> str:
    head = (f"{'preset':24s} {'Δppl':>8s} {'top1':>6s} {'KL':>7s} {'TTFT ms':>8s} {'tok/s':>7s} {'x int8':>6s} "
            f"{'x g128':>6s} {'MiB/step':>8s} {'GB/s':>6s} {'of bw':>6s}")
    lines = [f"== {name}", head, "-" * len(head)]
    base, g128 = rows.get("int8", {}).get("decode_tok_s"), rows.get("int4_sym_g128", {}).get("decode_tok_s")
    for preset, r in rows.items():
        step_mib = r["weight_mib"] + r["kv_mib"]
        gb_s = step_mib * 2**20 * r["decode_tok_s"] / 1e9
        acc = (f"{r['ppl_change']:+8.2%} {r['top1']:6.1%} {r['kl']:7.4f}" if "ppl_change" in r
               else f"{'-':>8s} {'-':>6s} {'-':>7s}")
        lines.append(f"{preset:24s} {acc} {1000 * r['ttft_s']:8.1f} {r['decode_tok_s']:7.1f} "
                     f"{r['decode_tok_s'] / base if base else float('nan'):6.2f} "
                     f"{r['decode_tok_s'] / g128 if g128 else float('nan'):6.2f} {step_mib:8.1f} {gb_s:6.1f} "
                     f"{gb_s / bandwidth:6.0%}")
    return "\n".join(lines)


def run_model(name: str, args: argparse.Namespace, bandwidth: float) -> dict[str, dict[str, Any]]:
    from ov_causal import DEMO_MODEL

    calibration = DEMO_MODEL / "calibration.txt"
    model = checkpoint(name, Path(args.work))
    presets = [p for p in args.presets.split(",") if not (name == "random-1b" and ("awq" in p or "gptq" in p))]
    folders = export_folders(model, presets, calibration)
    rows: dict[str, dict[str, Any]] = {p: {} for p in presets}
    if name != "random-1b" and not args.no_accuracy:
        for preset, values in accuracy(model, presets, calibration, args.max_tokens).items():
            if preset in rows:
                rows[preset].update(values)
    for preset, values in speeds(folders, args.runs, args.prompt_tokens, args.new_tokens).items():
        rows[preset].update(values)
    for preset, values in traffic(folders, args.prompt_tokens + args.new_tokens // 2).items():
        rows[preset].update(values)
    print(table(name, rows, bandwidth), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="demo,smollm2,random-1b")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=4096, help="held-out tokens scored by evaluate()")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--work", default="/tmp/int4-channel-bench", help="where the random 1B checkpoint goes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from ov_causal.tools.traffic import memory_read_gb_s

    bandwidth = memory_read_gb_s()
    results: dict[str, Any] = {"memory_read_gb_s": bandwidth, "settings": vars(args), "models": {}}
    for name in args.models.split(","):
        results["models"][name] = run_model(name, args, bandwidth)
    bandwidth_after = memory_read_gb_s()
    results["memory_read_gb_s_after"] = bandwidth_after
    print(f"memory read bandwidth (numpy sum of 512 MiB, median of 7): {bandwidth:.1f} GB/s before, "
          f"{bandwidth_after:.1f} GB/s after; 'of bw' = achieved / before")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
