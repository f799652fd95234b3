"""What a LoRA adapter costs: run-time adapters (each GenAI mode) vs the fused export (lora=) vs the base.

Makes two PEFT LoRA adapters on the model (rank --rank on every linear layer, random weights scaled small so the
text stays sensible), exports the base once and the fused model once, then measures in one process: adapter load
time, switch time (set_adapter between the two), decode tokens/s with an adapter active (GenAI's own throughput,
median of --runs, the configurations taking turns), and memory per adapter (its tensors, and the process RSS
growth when it is loaded). Prints a markdown table and writes JSON.

    python scripts/lora_cost.py                       # SmolLM2-135M-Instruct (tests/smollm2.py), preset int8
    python scripts/lora_cost.py --model /path/ckpt --preset int4_asym_g64 --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ov_causal import AutoModelForCausalLM, LoraError

SMOLLM2 = Path.home() / ".cache/ov_causal-tests/smollm2-135m-instruct-v1"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle. Once upon a time,"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS"))


def make_adapter(checkpoint: Path, out: Path, seed: int, rank: int, scale: float) -> Path:
    """A PEFT LoRA with random A and B (B scaled by ``scale``), saved as PEFT saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM as TorchModel

    torch.manual_seed(seed)
    model = get_peft_model(TorchModel.from_pretrained(checkpoint, dtype="float32"),
                           LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS, init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    model.save_pretrained(out)
    return out


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_rate(model: Any, inputs: Any, new_tokens: int) -> float:
    """GenAI's decode throughput (tokens/s after the first token) of one greedy call."""
    model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    assert model.last_engine == "genai", model.last_engine_reason
    return model._genai.last_perf_metrics.get_throughput().mean


def runtime_model(base: Path, adapters: dict[str, Path], mode: str) -> tuple[Any, dict[str, float]]:
    """The base export with both adapters loaded in ``mode``; its load costs."""
    model = AutoModelForCausalLM.from_pretrained(base)
    model.adapter_mode = mode
    costs: dict[str, float] = {}
    before = rss_mib()
    costs["load first s"] = timed(lambda: model.load_adapter(adapters["a"], "a"))
    middle = rss_mib()
    costs["load second s"] = timed(lambda: model.load_adapter(adapters["b"], "b"))
    costs["rss first MiB"], costs["rss second MiB"] = middle - before, rss_mib() - middle
    costs["tensors MiB"] = model.adapter_registry.loaded["a"].nbytes / 2**20
    switches = []
    for name in ("b", "a", "b", "a", "b", "a"):
        switches.append(timed(lambda name=name: model.set_adapter(name)))
    costs["switch s"] = statistics.median(switches)
    return model, costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SMOLLM2)
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--scale", type=float, default=0.05, help="lora_B multiplier (small: sensible text)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("lora_cost.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lora-cost-"))
    adapters = {name: make_adapter(args.model, work / name, seed, args.rank, args.scale)
                for name, seed in (("a", 1), ("b", 2))}
    base_model = AutoModelForCausalLM.from_pretrained(args.model, preset=args.preset)
    base = Path(base_model.model_save_dir)
    rows: dict[str, dict[str, float]] = {"base (no adapter)": {}}
    models: dict[str, Any] = {"base (no adapter)": base_model}
    export_s = timed(lambda: models.__setitem__("fused (lora=)", AutoModelForCausalLM.from_pretrained(
        args.model, preset=args.preset, lora=adapters["a"], cache=False)))
    rows["fused (lora=)"] = {"load first s": export_s, "switch s": export_s}  # a new adapter = a new export
    for mode in ("dynamic", "static", "fuse"):
        label = f"run-time, {mode}" + (" (default)" if mode == "dynamic" else "")
        try:
            models[label], rows[label] = runtime_model(base, adapters, mode)
        except LoraError as exc:  # 'fuse' needs fp32/fp16 weights
            print(f"{label}: not measured: {exc}")
            continue
        models[label].set_adapter("a")
    rows["run-time, dynamic, disabled"] = {}
    inputs = base_model.tokenizer([PROMPT], return_tensors="pt")
    rates: dict[str, list[float]] = {label: [] for label in rows}
    dynamic = models["run-time, dynamic (default)"]
    for _ in range(args.runs):  # configurations take turns: the machine's noise falls on each alike
        for label in rows:
            model = models.get(label, dynamic)
            if label.endswith("disabled"):
                dynamic.disable_adapters()
            rates[label].append(decode_rate(model, inputs, args.new_tokens))
            if label.endswith("disabled"):
                dynamic.enable_adapters()
    for label, row in rows.items():
        row["decode tok/s"] = statistics.median(rates[label])
    report(rows, args)


def seconds(value: float) -> str:
    return f"{value * 1e3:.2f} ms" if value < 1 else f"{value:.2f} s"


def report(rows: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    base_rate = rows["base (no adapter)"]["decode tok/s"]
    print(f"\n{args.model.name}, preset {args.preset}, LoRA rank {args.rank} on {len(TARGETS)} linear layers per "
          f"block, {args.new_tokens} new tokens, median of {args.runs}\n")
    print("| configuration | adapter load | switch | decode tok/s | vs base | memory per adapter |")
    print("|---|---|---|---|---|---|")
    for label, row in rows.items():
        load = f"{row['load first s']:.2f} s" if "load first s" in row else "-"
        if "load second s" in row:
            load += f" (next: {row['load second s']:.2f} s)"
        switch = seconds(row["switch s"]) if "switch s" in row else "-"
        memory = (f"{row['tensors MiB']:.1f} MiB tensors, RSS {row['rss second MiB']:+.0f} MiB (first load, "
                  f"engine rebuilt: {row['rss first MiB']:+.0f})") if "tensors MiB" in row else "-"
        print(f"| {label} | {load} | {switch} | {row['decode tok/s']:.1f} | {row['decode tok/s'] / base_rate:.2f}x "
              f"| {memory} |")
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"\nwritten: {args.json}")


if __name__ == "__main__":
    main()
