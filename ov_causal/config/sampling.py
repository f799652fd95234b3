"""One sampling mapping for both paths: transformers' generation settings or an OpenAI request -> ``SamplingParams``
-> ``openvino_genai.GenerationConfig``; and one seed function, ``rng_seed``.

``model.backends.genai_config`` (``model.generate()``, ``ov-causal generate``, Ray batches) and
``serving.completer.Completer`` (the OpenAI server) both build GenAI's config here, so a setting means the same
on either side. Torch-free and GenAI-free until ``to_genai`` (which imports ``openvino_genai``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import OptionError

SEED_RANGE = 2**64  # GenAI's rng_seed is unsigned 64-bit; OpenAI's seed is a signed 64-bit int
_TORCH_DRAW = 2**31 - 1  # the range the transformers path draws GenAI's seed from torch's generator
STOP_CRITERIA = {True: "EARLY", False: "HEURISTIC", "never": "NEVER"}  # transformers' early_stopping -> GenAI
# The numeric fields __post_init__ checks, with their bounds.
_NUMBER_BOUNDS = (
    (("max_new_tokens", "min_new_tokens", "top_k", "no_repeat_ngram_size", "num_assistant_tokens"),
     {"minimum": 0, "integer": True}),
    (("num_return_sequences", "num_beams", "num_beam_groups", "max_ngram_size"), {"minimum": 1, "integer": True}),
    (("temperature", "diversity_penalty"), {"minimum": 0}),
    (("top_p", "min_p"), {"minimum": 0, "maximum": 1}),
    (("presence_penalty", "frequency_penalty", "length_penalty"), {}),
)


def rng_seed(seed: int | None = None, *, follow_torch: bool = False) -> int:
    """GenAI's ``rng_seed`` (unsigned 64-bit) for one sampled generation: the one place seeds come from.

    Args:
        seed: an explicit seed; it wins. Taken modulo 2**64, so OpenAI's signed 64-bit seeds map onto GenAI's
            unsigned ones (-1 -> 2**64 - 1) and non-negative seeds are kept as they are.
        follow_torch: the transformers path (``model.generate()``, ``ov-causal generate --seed``). A ``seed``
            means ``torch.manual_seed(seed)``: the result is the draw the transformers path then makes
            (``torch_seed_draw``, computed without torch). Without a seed, the next draw of torch's global
            generator, so ``transformers.set_seed``/``torch.manual_seed`` make GenAI's sampling reproducible as
            they make the transformers loop's; torch is never imported here (not loaded yet: random bits).

    Returns:
        A seed in [0, 2**64); without a seed (and no torch to follow), 64 random bits from ``os.urandom``.

    Example:
        >>> rng_seed(-1)
        18446744073709551615
    """
    if seed is not None:
        _check_seed(seed)
        return torch_seed_draw(seed) if follow_torch else seed % SEED_RANGE
    torch = sys.modules.get("torch") if follow_torch else None
    if torch is not None:
        return int(torch.randint(0, _TORCH_DRAW, (1,)).item())
    return int.from_bytes(os.urandom(8), "little")


def torch_seed_draw(seed: int) -> int:
    """What ``torch.manual_seed(seed); torch.randint(0, 2**31 - 1, (1,))`` returns, without torch.

    torch's CPU generator is MT19937 seeded with the low 32 bits of the seed; this draw takes two
    32-bit words (high, low) modulo the range.
    """
    state = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        state.append((1812433253 * (state[-1] ^ (state[-1] >> 30)) + i) & 0xFFFFFFFF)

    def word(i: int) -> int:
        y = (state[i] & 0x80000000) | (state[i + 1] & 0x7FFFFFFF)
        y = state[i + 397] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        return y ^ (y >> 18)

    return ((word(0) << 32) | word(1)) % _TORCH_DRAW


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < SEED_RANGE:
        raise OptionError(f"seed={seed!r} is not valid: use an integer in [-2**63, 2**64) (OpenAI's signed 64-bit "
                          "seeds and GenAI's unsigned ones both fit), or None for a random seed.")


@dataclass(frozen=True)
class SamplingParams:
    """The generation settings of one call, in GenAI's terms; None leaves the base config's value as it is.

    ``from_transformers`` sets every field the transformers path maps; ``from_openai`` only what the request
    sets (the rest comes from the served folder's generation config). ``seed`` None while sampling: random bits
    (``rng_seed``). ``constraint``: ``openvino_genai.StructuredOutputConfig`` keywords (a compiled
    response_format).
    """

    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    num_return_sequences: int | None = None
    num_beams: int | None = None
    num_beam_groups: int | None = None
    diversity_penalty: float | None = None
    length_penalty: float | None = None
    early_stopping: bool | str | None = None
    eos_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None
    constraint: Mapping[str, str] | None = None
    num_assistant_tokens: int | None = None
    max_ngram_size: int | None = None

    def __post_init__(self) -> None:
        for names, bounds in _NUMBER_BOUNDS:
            for name in names:
                _check_number(self, name, **bounds)
        if _check_number(self, "repetition_penalty") is not None and self.repetition_penalty <= 0:
            raise OptionError(f"repetition_penalty={self.repetition_penalty!r} is not valid: use a number > 0 "
                              "(1.0 leaves the output as it is).")
        if self.early_stopping is not None and self.early_stopping not in STOP_CRITERIA:
            raise OptionError(f"early_stopping={self.early_stopping!r} is not valid: use True, False or 'never'.")
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.eos_token_ids):
            raise OptionError(f"eos_token_id={list(self.eos_token_ids)!r} is not valid: use token ids (ints >= 0).")
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise OptionError(f"stop_strings={list(self.stop_strings)!r} is not valid: use non-empty strings.")
        if self.seed is not None:
            _check_seed(self.seed)

    @classmethod
    def from_transformers(
        cls, config: Any, prompt_length: int = 0, *, seed: int | None = None, presence_penalty: float | None = None,
        frequency_penalty: float | None = None, constraint: Mapping[str, str] | None = None, assistant: bool = False,
    ) -> SamplingParams:
        """The settings of a transformers ``GenerationConfig`` (or any object with its attributes).

        Args:
            config: the effective generation config of the call.
            prompt_length: the prompt's tokens (``max_length``/``min_length`` count them, GenAI does not).
            seed: GenAI's seed when sampling; None: ``rng_seed(follow_torch=True)``.
            presence_penalty, frequency_penalty: ``generate()`` keywords only GenAI has.
            constraint: a compiled ``response_format`` (``StructuredOutputConfig`` keywords).
            assistant: an assistant (draft) model is given.
        """
        eos = config.eos_token_id
        stop = config.stop_strings
        fields: dict[str, Any] = dict(
            max_new_tokens=config.max_new_tokens if config.max_new_tokens is not None
            else max(0, (config.max_length or 20) - prompt_length),
            min_new_tokens=config.min_new_tokens or max(0, (config.min_length or 0) - prompt_length),
            eos_token_ids=(eos,) if isinstance(eos, int) else tuple(eos or ()),
            stop_strings=(stop,) if isinstance(stop, str) else tuple(stop or ()),
            repetition_penalty=float(config.repetition_penalty or 1.0),
            no_repeat_ngram_size=int(config.no_repeat_ngram_size or 0) or None,
            presence_penalty=presence_penalty, frequency_penalty=frequency_penalty, constraint=constraint,
            num_return_sequences=config.num_return_sequences or 1, do_sample=False,
        )
        if (config.num_beams or 1) > 1:
            fields.update(_beam_fields(config))
        elif config.do_sample:
            fields.update(do_sample=True, seed=seed if seed is not None else rng_seed(follow_torch=True),
                          temperature=float(config.temperature if config.temperature is not None else 1.0),
                          top_k=int(config.top_k or 0), top_p=float(config.top_p if config.top_p is not None else 1.0),
                          min_p=float(config.min_p) if config.min_p else None)
        if config.prompt_lookup_num_tokens:
            fields.update(num_assistant_tokens=int(config.prompt_lookup_num_tokens),
                          max_ngram_size=int(config.max_matching_ngram_size or 2))
        elif assistant:
            fields.update(num_assistant_tokens=int(config.num_assistant_tokens or 5))
        return cls(**fields)

    @classmethod
    def from_openai(
        cls, max_tokens: int | None = None, temperature: float | None = None, top_p: float | None = None,
        n: int = 1, stop: Iterable[str] = (), seed: int | None = None, presence_penalty: float | None = None,
        frequency_penalty: float | None = None, constraint: Mapping[str, str] | None = None,
    ) -> SamplingParams:
        """The settings of an OpenAI request (its field names; ``temperature=0`` is greedy decoding).

        Unset fields (None) keep the served folder's defaults; ``top_p`` and ``seed`` apply when sampling.
        """
        return cls(
            max_new_tokens=max_tokens,
            do_sample=None if temperature is None else temperature != 0,
            temperature=float(temperature) if temperature else None,
            top_p=None if top_p is None else float(top_p),
            num_return_sequences=n if n > 1 else None,
            stop_strings=tuple(stop), seed=seed,
            presence_penalty=None if presence_penalty is None else float(presence_penalty),
            frequency_penalty=None if frequency_penalty is None else float(frequency_penalty),
            constraint=constraint,
        )

    def sampled(self, base: Any = None) -> bool:
        """Whether these settings sample (on top of ``base``, a GenAI config, when they leave it to it)."""
        if self.do_sample is not None:
            return self.do_sample
        return bool(getattr(base, "do_sample", False))

    def to_genai(self, base: Any = None) -> Any:
        """An ``openvino_genai.GenerationConfig``: ``base`` (changed in place; default a fresh one) with these
        settings applied. Sampling draws ``rng_seed(seed)``."""
        import openvino_genai

        out = base if base is not None else openvino_genai.GenerationConfig()
        _assign(out, self, "max_new_tokens", "min_new_tokens", "num_return_sequences")
        _assign(out, self, "repetition_penalty", "presence_penalty", "frequency_penalty", convert=float)
        if self.no_repeat_ngram_size:
            out.no_repeat_ngram_size = self.no_repeat_ngram_size
        if self.eos_token_ids:
            out.eos_token_id, out.stop_token_ids = self.eos_token_ids[0], set(self.eos_token_ids)
        if self.stop_strings:
            out.stop_strings, out.include_stop_str_in_output = set(self.stop_strings), True
        if self.constraint is not None:
            out.structured_output_config = openvino_genai.StructuredOutputConfig(**self.constraint)
        if (self.num_beams or 1) > 1:
            _assign(out, self, "num_beams", "num_beam_groups")
            _assign(out, self, "diversity_penalty", "length_penalty", convert=float)
            early = self.early_stopping if self.early_stopping is not None else False
            out.stop_criteria = getattr(openvino_genai.StopCriteria, STOP_CRITERIA[early])
        elif self.do_sample is not None:
            out.do_sample = self.do_sample
        if out.do_sample:
            _assign(out, self, "temperature", "top_p", convert=float)
            _assign(out, self, "top_k")
            if self.min_p:
                out.min_p = float(self.min_p)
            out.rng_seed = rng_seed(self.seed)
        _assign(out, self, "num_assistant_tokens", "max_ngram_size")
        return out


def _beam_fields(config: Any) -> dict[str, Any]:
    early = config.early_stopping if config.early_stopping is not None else False
    return dict(num_beams=config.num_beams, num_beam_groups=config.num_beam_groups or 1,
                diversity_penalty=float(config.diversity_penalty or 0.0),
                length_penalty=float(config.length_penalty if config.length_penalty is not None else 1.0),
                early_stopping=early)


def _assign(out: Any, params: SamplingParams, *names: str, convert: Any = None) -> None:
    for name in names:
        value = getattr(params, name)
        if value is not None:
            setattr(out, name, convert(value) if convert else value)


def _check_number(params: SamplingParams, name: str, minimum: float | None = None, maximum: float | None = None,
                  integer: bool = False) -> Any:
    value = getattr(params, name)
    if value is None:
        return None
    kind = int if integer else (int, float)
    wrong = isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value))
    if wrong or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        allowed = "an integer" if integer else "a finite number"
        bounds = "".join(part for part, bound in ((f" >= {minimum}", minimum), (f" <= {maximum}", maximum))
                         if bound is not None)
        raise OptionError(f"{name}={value!r} is not valid: use {allowed}{bounds}.")
    return value
