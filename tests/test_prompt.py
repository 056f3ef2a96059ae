"""The system prompt: the futures block is opt-in and its example is valid CML."""

from __future__ import annotations

from asynclm.prompt import FUTURES_RULES, system_prompt
from asynclm.protocol import Call, Parser, Ref
from asynclm.tools import Toolbox, tool


@tool
def search_flights(dest: str) -> dict:
    """Search flights."""
    return {}


def test_futures_block_is_opt_in():
    box = Toolbox([search_flights])
    plain = system_prompt(box)
    fut = system_prompt(box, futures=True)
    assert "$p1" not in plain and "Futures:" not in plain
    assert fut.startswith(plain) and "$p1.best.id" in fut
    assert system_prompt(box, futures=True, extra="X").endswith("\n\nX")


def test_futures_example_parses_to_a_reference():
    fut = system_prompt(Toolbox([search_flights]), futures=True)
    example = fut[fut.index("Assistant:", fut.index("Example 3")) + len("Assistant:"):]
    calls = [e for e in Parser(transcript=True).feed(example) if isinstance(e, Call)]
    assert [c.id for c in calls] == ["p1", "a1"]
    assert calls[1].args == {"product_id": Ref("p1", ("best", "id"))}
    assert "{call}" in FUTURES_RULES  # formatted with the session's markers
