"""Train the small demo model shipped in ``ov_causal/demo_model`` (reproducible, CPU only).

The corpus is this Python's own standard library source. Files are split by a hash of their
relative path: one in ten is held out (never trained on) and written to ``heldout.txt`` so that
accuracy studies can measure the model on text it has not seen.

Usage:
    python scripts/train_demo_model.py --out ov_causal/demo_model --steps 1000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sysconfig
import time
from pathlib import Path

VOCAB_SIZE = 4096
SEQ_LEN = 128
SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>"]


def stdlib_files() -> list[Path]:
    """Sorted ``.py`` files of the running Python's standard library (tests and site-packages excluded)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("site-packages", "test", "tests", "idlelib", "lib2to3", "ensurepip")
    files = [p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts)]
    return sorted(files, key=lambda p: str(p.relative_to(root)))


def is_heldout(path: Path) -> bool:
    """One file in ten, chosen by a stable hash of its name, is never trained on."""
    return hashlib.sha256(path.name.encode()).digest()[0] % 10 == 0


def read_corpus() -> tuple[str, str]:
    """Return (training text, held-out text), documents separated by the end-of-text token."""
    train, heldout = [], []
    for path in stdlib_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        (heldout if is_heldout(path) else train).append(text)
    sep = "\n" + SPECIAL_TOKENS[0] + "\n"
    return sep.join(train), sep.join(heldout)


def write_texts(out: Path) -> None:
    """Held-out text (never trained on) and calibration text (a sample of the training files)."""
    _, heldout_text = read_corpus()
    (out / "heldout.txt").write_text(heldout_text[:200_000], encoding="utf-8")
    training = [p for p in stdlib_files() if not is_heldout(p)][::25]
    calibration = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in training)
    (out / "calibration.txt").write_text(calibration[:100_000], encoding="utf-8")


def train_tokenizer(text: str):
    """Byte-level BPE tokenizer wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    chunks = [text[i : i + 100_000] for i in range(0, len(text), 100_000)]
    tok.train_from_iterator(chunks, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL_TOKENS[0],
        eos_token=SPECIAL_TOKENS[0],
        pad_token=SPECIAL_TOKENS[1],
        model_max_length=512,
    )


def build_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    return LlamaForCausalLM(config)


def train(out: Path, steps: int, batch_size: int, lr: float, seed: int) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    train_text, heldout_text = read_corpus()
    tokenizer = train_tokenizer(train_text)
    ids = torch.tensor(tokenizer(train_text)["input_ids"], dtype=torch.long)
    model = build_model()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(seed)
    start, losses = time.time(), []
    for step in range(steps):
        warm = min(1.0, (step + 1) / 50)
        for group in opt.param_groups:
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        offsets = torch.randint(0, len(ids) - SEQ_LEN - 1, (batch_size,), generator=gen)
        batch = torch.stack([ids[o : o + SEQ_LEN] for o in offsets])
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - start:6.0f}s", flush=True)
    model.generation_config.pad_token_id = 1
    model.generation_config.eos_token_id = 0
    model.generation_config.bos_token_id = 0
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_texts(out)
    info = {
        "corpus": "Python standard library source, one file in ten held out",
        "train_tokens": len(ids),
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": SEQ_LEN,
        "final_loss_mean_50": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": round(time.time() - start),
        "seed": seed,
    }
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("ov_causal/demo_model"))
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--texts-only", action="store_true", help="only (re)write heldout.txt and calibration.txt")
    args = parser.parse_args()
    if args.texts_only:
        write_texts(args.out)
        return
    print(json.dumps(train(args.out, args.steps, args.batch_size, args.lr, args.seed), indent=2))


if __name__ == "__main__":
    main()
