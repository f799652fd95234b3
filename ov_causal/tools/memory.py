"""Peak memory of one engine on its own: a fresh process loads it, generates, and reports its peak RSS.

``bench`` keeps every engine in one process so that their speeds are measured side by side; their
memory cannot be told apart there. ``engine_peak_rss_mib`` starts ``python -m ov_causal.tools.memory``
for one engine, which is what a user running only that engine would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import OVCausalError
from .runners import greedy, load_runner


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM), in MiB; NaN where /proc is not available."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return float("nan")


@dataclass(frozen=True)
class MemoryJob:
    """What one memory measurement loads and runs.

    ``folder`` is the exported OpenVINO folder (every OpenVINO engine), ``checkpoint`` the transformers
    checkpoint (the ``transformers`` engine).
    """

    engine: str
    folder: str
    checkpoint: str
    device: str = "CPU"
    ov_config: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 64
    new_tokens: int = 32
    num_prompts: int = 8


def engine_peak_rss_mib(job: MemoryJob, timeout: float = 900) -> float:
    """Peak RSS (MiB) of a new process that loads ``job.engine`` and generates one prompt, then ``num_prompts``."""
    done = subprocess.run([sys.executable, "-m", "ov_causal.tools.memory", json.dumps(asdict(job))],
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OVCausalError(f"measuring the memory of {job.engine} failed: {tail}")
    return float(lines[-1])


def _child(job: dict[str, Any]) -> None:
    import numpy as np

    runner = load_runner(job["engine"], job["folder"], job["device"], job["ov_config"], checkpoint=job["checkpoint"])
    with open(os.path.join(job["folder"], "config.json"), encoding="utf-8") as config:
        vocab = int(json.load(config)["vocab_size"])
    rng = np.random.default_rng(0)
    for count in (1, job["num_prompts"]):
        ids = rng.integers(2, vocab, (count, job["prompt_tokens"]), dtype=np.int64)
        _generate(runner, job["engine"], ids, job["new_tokens"])
    print(f"{peak_rss_mib():.1f}")


def _generate(runner: Any, engine: str, ids: Any, new_tokens: int) -> None:
    """One greedy call; the GenAI engine gets NumPy arrays so that its process never imports torch."""
    if engine == "llm-pipeline":
        runner.generate(ids, **greedy(new_tokens))
        return
    import torch

    with torch.no_grad():
        tensor = torch.from_numpy(ids)
        runner.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), **greedy(new_tokens))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
