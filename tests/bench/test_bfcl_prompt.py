"""BFCL's own prompt and the decoding of its Python-list answers (never evaluated)."""

from __future__ import annotations

import pytest

from asynclm.bench.bfcl.bfcl_prompt import (
    DecodeError, bfcl_messages, bfcl_system_prompt, decode_python_list, format_answer,
)
from asynclm.bench.bfcl.checker import check
from asynclm.bench.bfcl.data import ground_truth_calls, load


def test_system_prompt_is_bfcls_default() -> None:
    (item,) = load("parallel", limit=1)
    text = bfcl_system_prompt(item.functions)
    assert text.startswith("You are an expert in composing functions.")
    assert "[func_name1(params_name1=params_value1" in text
    assert "Note that the provided function is in Python 3 syntax." in text
    assert '"name": "spotify.play"' in text
    msgs = bfcl_messages(item.functions, item.turns[0])
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert item.functions[0]["description"].endswith("duration.")  # the item is not modified


def test_ground_truth_answer_round_trips_through_the_checker() -> None:
    for item in load("parallel_multiple", limit=10):
        calls = ground_truth_calls(item)
        decoded = decode_python_list(format_answer(calls))
        assert decoded == [{fn: args} for fn, args in calls]


def test_decoding_follows_bfcl() -> None:
    assert decode_python_list('f(a=1), g.h(b="x")') == [{"f": {"a": 1}}, {"g.h": {"b": "x"}}]
    assert decode_python_list("```\n[f(a=-2, b=[1, 2], c={'k': (1, 2)}, d=x)]\n```") == [
        {"f": {"a": -2, "b": [1, 2], "c": {"k": (1, 2)}, "d": "x"}}]
    assert decode_python_list("[f(a=2*3+1, s='a'+'b')]") == [{"f": {"a": 7, "s": "ab"}}]
    (item,) = load("parallel", limit=1)
    assert check(item, decode_python_list(
        '[spotify.play(artist="Maroon 5", duration=15), '
        'spotify.play(artist="Taylor Swift", duration=20)]'))[0]


@pytest.mark.parametrize("text", [
    'I cannot help with that.',
    '[f(x=__import__("os").system("echo pwned") + 1)]',
    "[f(x=9**9**9)]",
    "[f(x='a' * 10**9)]",
    "[f(x=lambda: 1)]",
    "[f(x=math.pi)]",
    "[1, 2]",
    "[f(x=" * 500,
])
def test_bad_answers_are_decode_errors_and_nothing_runs(text: str) -> None:
    with pytest.raises(DecodeError):
        decode_python_list(text)
