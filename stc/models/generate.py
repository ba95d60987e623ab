"""Generation: greedy decoding with stage 2 hooked in for this call only, timed per token, cut at
a time limit or when the caller says stop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from transformers.generation.stopping_criteria import StoppingCriteriaList

from .measure import StopWhen, Timer
from .prepare import Prepared


def check_generation(max_new_tokens, max_seconds) -> None:
    """ValueError unless 1 <= max_new_tokens <= 4096 (an integer) and max_seconds is None or > 0."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= 4096:
        raise ValueError(f"max_new_tokens must be an integer in [1, 4096], got {max_new_tokens!r}")
    if max_seconds is not None and not (isinstance(max_seconds, (int, float)) and max_seconds > 0):
        raise ValueError(f"max_seconds must be a positive number or None, got {max_seconds!r}")


@dataclass
class Generated:
    """One generation: the decoded text and what it cost."""

    text: str
    new_tokens: int
    prefill_seconds: float
    decode_tokens_per_second: float
    seconds: float


def choice_constraint(sequences: Sequence[Sequence[int]], ends: Sequence[int], prompt_len: int):
    """A ``prefix_allowed_tokens_fn`` for `generate`: the answer (the ids after ``prompt_len``)
    spells one of ``sequences`` (token ids) and then one of ``ends`` (end-of-turn ids), greedy
    among what is allowed at each step. Past a complete choice, or off every choice (never, under
    the constraint), only ``ends`` are allowed."""
    sequences = [tuple(int(t) for t in seq) for seq in sequences if len(seq)]
    ends = sorted({int(e) for e in ends})
    if not sequences or not ends:
        raise ValueError("a constrained answer needs at least one non-empty choice and an end-of-turn token")

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        said = tuple(input_ids[prompt_len:].tolist())
        nxt = {seq[len(said)] for seq in sequences if len(seq) > len(said) and seq[: len(said)] == said}
        if any(seq == said for seq in sequences) or not nxt:
            nxt |= set(ends)
        return sorted(nxt)

    return allowed


def generate(model, tokenizer, prep: Prepared, max_new_tokens: int, max_seconds: float | None,
             should_stop: Callable[[], bool] | None, sync: Callable[[], None],
             choices: Sequence[str] | None = None) -> Generated:
    """Greedy generation of ``prep``'s prompt with stage 2 hooked in for this call; timed per
    token (``sync``: the device synchronised before each clock read). ``choices``: the answer is
    one of these strings, spelt as the tokenizer spells it alone, then the end of the turn
    (`choice_constraint`); the constraint bounds the answer's length itself, so
    ``max_new_tokens`` becomes the longest choice's length plus the end (a smaller cap would cut
    a choice in half, a larger one is never reached)."""
    constraint = None
    if choices is not None:
        ends = model.generation_config.eos_token_id
        ends = [ends] if isinstance(ends, int) else list(ends or [])
        if tokenizer.eos_token_id is not None:
            ends.append(tokenizer.eos_token_id)
        sequences = [tokenizer.encode(c, add_special_tokens=False) for c in choices]
        constraint = choice_constraint(sequences, ends, prep.inputs.prompt_len)
        max_new_tokens = max(map(len, sequences)) + 1
    timer = Timer(sync)
    sync()
    start = time.perf_counter()
    with prep.stage2(), torch.no_grad():
        out = model.generate(
            **prep.inputs.generate_kwargs,
            max_new_tokens=max_new_tokens,
            max_time=max_seconds,
            do_sample=False,
            num_beams=1,
            streamer=timer,
            stopping_criteria=StoppingCriteriaList([StopWhen(should_stop)]) if should_stop else None,
            prefix_allowed_tokens_fn=constraint,
        )
    sync()
    new_ids = out[0, prep.inputs.prompt_len :]
    return Generated(
        text=tokenizer.decode(new_ids, skip_special_tokens=True).strip(),
        new_tokens=int(new_ids.numel()),
        prefill_seconds=(timer.first - start) if timer.first is not None else 0.0,
        decode_tokens_per_second=(timer.tokens - 1) / (timer.last - timer.first) if timer.tokens > 1 else 0.0,
        seconds=time.perf_counter() - start,
    )
