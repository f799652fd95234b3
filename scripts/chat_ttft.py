"""Time to first token of a chat's second turn vs. a fresh conversation of the same length.

A conversation that grows turn by turn re-sends its history; the GenAI engine's prefix cache should
make turn 2 start sooner than a prompt it has never seen. Each run uses a different conversation
(text windows from the demo model's held-out file), and the fresh prompt has the same length in
tokens as turn 2 but content never sent before. Same process, alternating order, medians.

    python scripts/chat_ttft.py --model /tmp/bigckpt --preset int8 --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import ov_causal
from ov_causal import DEMO_MODEL

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}<|assistant|>\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEMO_MODEL)
    parser.add_argument("--preset", default="int8")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--turn1-tokens", type=int, default=32, help="tokens of turn 1's reply")
    parser.add_argument("--turn1-chars", type=int, default=400, help="characters of turn 1's user message")
    args = parser.parse_args()

    model = ov_causal.AutoModelForCausalLM.from_pretrained(args.model, preset=args.preset)
    tok = model.tokenizer
    tok.chat_template = TEMPLATE
    pipe = ov_causal.pipeline("text-generation", model=model, tokenizer=tok)
    text = (Path(DEMO_MODEL) / "heldout.txt").read_text(encoding="utf-8")
    span = max(600, args.turn1_chars + 400)
    windows = [text[i * span: (i + 1) * span] for i in range(2 * args.runs + 2)]
    one = dict(max_new_tokens=1, min_new_tokens=1, do_sample=False)

    def ttft(messages: list[dict[str, str]]) -> float:
        start = time.perf_counter()
        pipe(messages, **one)
        return time.perf_counter() - start

    pipe([{"role": "user", "content": windows[-1]}], **one)  # warm-up
    turn2, fresh, lengths = [], [], []
    for run in range(args.runs):
        history = [{"role": "user", "content": windows[2 * run][: args.turn1_chars]}]
        reply = pipe(history, max_new_tokens=args.turn1_tokens, do_sample=False)[0]["generated_text"][-1]
        history += [reply, {"role": "user", "content": "Now rewrite it with type hints."}]
        length = len(tok.apply_chat_template(history, tokenize=True, return_dict=False))
        # A never-seen conversation with the same token count: cut another window to that length.
        ids = tok(windows[2 * run + 1], add_special_tokens=False)["input_ids"]
        empty = [{"role": "user", "content": ""}]
        template_cost = len(tok.apply_chat_template(empty, tokenize=True, return_dict=False))
        other = [{"role": "user", "content": tok.decode(ids[: max(1, length - template_cost)])}]
        pair = [("turn2", history), ("fresh", other)] if run % 2 else [("fresh", other), ("turn2", history)]
        for kind, messages in pair:
            (turn2 if kind == "turn2" else fresh).append(ttft(messages))
        lengths.append(length)
    t2, fr = statistics.median(turn2), statistics.median(fresh)
    print(f"model {args.model} preset {args.preset}, engine {model.last_engine}, turn-2 prompts of "
          f"{min(lengths)}-{max(lengths)} tokens, median of {args.runs}")
    print("| prompt | time to first token (ms) | range |")
    print("|---|---|---|")
    print(f"| fresh conversation, same length | {1000 * fr:.1f} | {1000 * min(fresh):.1f}-{1000 * max(fresh):.1f} |")
    print(f"| chat turn 2 (history re-sent) | {1000 * t2:.1f} | {1000 * min(turn2):.1f}-{1000 * max(turn2):.1f} |")
    print(f"turn 2 starts {fr / t2:.1f}x sooner than a fresh prompt")


if __name__ == "__main__":
    main()
