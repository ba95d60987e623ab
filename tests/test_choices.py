"""Constrained answers (`VideoLLM.answer(choices=...)`, `stc.eval --constrained`): the answer is
exactly one of the choices, spelt as the tokenizer spells it, then the end of the turn."""

import pytest
import torch

from stc.models.generate import choice_constraint

END = 99


def _allowed(constraint, said, prompt=(7, 7, 7)):
    return constraint(0, torch.tensor([*prompt, *said]))


def test_the_constraint_walks_each_choice_and_then_ends():
    constraint = choice_constraint([[1, 2, 3], [1, 4], [5]], [END], prompt_len=3)
    assert _allowed(constraint, []) == [1, 5]
    assert _allowed(constraint, [1]) == [2, 4]
    assert _allowed(constraint, [1, 2]) == [3]
    assert _allowed(constraint, [1, 2, 3]) == [END]
    assert _allowed(constraint, [1, 4]) == [END]
    assert _allowed(constraint, [5]) == [END]
    assert _allowed(constraint, [6]) == [END]  # off every choice (never under the constraint): end it


def test_a_choice_that_is_the_prefix_of_another_may_end_or_go_on():
    constraint = choice_constraint([[1], [1, 2]], [END, 98], prompt_len=0)
    assert _allowed(constraint, [1], prompt=()) == [2, 98, END]
    assert _allowed(constraint, [1, 2], prompt=()) == [98, END]


def test_no_choice_or_no_end_is_refused():
    with pytest.raises(ValueError, match="choice"):
        choice_constraint([[]], [END], 0)
    with pytest.raises(ValueError, match="end-of-turn"):
        choice_constraint([[1]], [], 0)


def test_answer_is_one_of_the_choices_on_the_tiny_model(llm, video):
    import stc

    choices = ["A", "B", "a red ball", "the sun"]
    for config in (None, stc.STCConfig(retention=0.1)):
        answer = llm.answer(video, "What is shown?", config=config, max_new_tokens=12, choices=choices)
        assert answer.text in choices
        assert answer.stats.new_tokens <= max(len(llm.adapter.tokenizer.encode(c, add_special_tokens=False))
                                              for c in choices) + 1
    long = "a small red ball rolls slowly across a wooden table"  # more tokens than the cap below
    assert len(llm.adapter.tokenizer.encode(long, add_special_tokens=False)) > 4
    assert llm.answer(video, "What is shown?", max_new_tokens=4, choices=[long]).text == long  # never cut
    free = llm.answer(video, "What is shown?", max_new_tokens=12)
    assert free.text not in choices  # random weights: without the constraint, no option
    for bad in ("A", [], ["A", ""], [1, 2]):
        with pytest.raises(ValueError, match="choices"):
            llm.answer(video, "What is shown?", max_new_tokens=4, choices=bad)
