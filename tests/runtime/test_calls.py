"""The decode loop's call bookkeeping (runtime/calls.py): ids, repeats, injection times."""

from __future__ import annotations

import re

from asynclm.runtime.calls import CallBook, call_key
from asynclm.runtime.records import CallRecord
from asynclm.tools import Toolbox, tool


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


@tool(order_by="*")
def bump(n: int) -> int:
    """A stateful tool."""
    return n


def book(*, assign: bool = True, reuse: bool = True) -> CallBook:
    return CallBook(valid_id=re.compile(r"[a-z0-9]{1,8}").fullmatch, assign_ids=assign,
                    body_of=lambda raw: raw.strip("[]"), reuse=reuse,
                    tools=Toolbox([add, bump]))


def rec(id: str, fn: str = "add", status="ok", **args) -> CallRecord:
    return CallRecord(id=id, fn=fn, args=args, raw=f"{fn}({args})", status=status, value=3)


def test_a_valid_new_id_is_kept_others_are_renamed() -> None:
    b = book()
    assert b.name("k1") == ("k1", True, False)
    assert b.name("k1") == ("c1", True, True)  # used
    assert b.name("BAD!") == ("c2", True, True)  # invalid
    assert b.name(None) == ("c3", True, True)  # none written, ids="assign"
    assert b.name("c4") == ("c4", True, False)
    assert b.name(None) == ("c5", True, True)  # c4 taken: skipped


def test_strict_ids_make_unnamed_calls_fire_and_forget() -> None:
    b = book(assign=False)
    assert b.name(None) == ("_f1", False, True)
    assert b.name("x!") == ("c2", True, True)


def test_nothing_injected_nothing_repeated() -> None:
    assert book().check("add", {"a": 1, "b": 2}, (), "", parsed=True) == (None, False)


def test_a_delivered_result_answers_its_repeat() -> None:
    b = book()
    first = rec("k1", a=1, b=2)
    b.injected([first], 5.0)
    assert b.injected_at == {"k1": 5.0}
    assert b.check("add", {"b": 2, "a": 1}, (), "", parsed=True) == (first, True)
    assert b.check("add", {"a": 1, "b": 3}, (), "", parsed=True) == (None, False)
    # without reuse, a delivered call is neither reused nor counted as a repeat
    nb = book(reuse=False)
    nb.injected([first], 5.0)
    assert nb.check("add", {"a": 1, "b": 2}, (), "", parsed=True) == (None, False)


def test_stateful_tools_are_never_reused() -> None:
    b = book()
    b.injected([rec("k1", "bump", n=1)], 1.0)
    assert b.check("bump", {"n": 1}, (), "", parsed=True) == (None, False)


def test_repeating_a_failed_call_counts() -> None:
    b = book()
    b.injected([rec("k1", status="error", a=1, b=2)], 1.0)
    assert b.check("add", {"a": 1, "b": 2}, (), "", parsed=True) == (None, True)


def test_malformed_calls_are_known_by_their_body() -> None:
    b = book()
    bad = CallRecord(id="c1", fn="", args={}, raw="[ f(( ]", status="error")
    b.injected([bad], 1.0)
    assert b.check("", {}, (), "[ f((   ]", parsed=False) == (None, True)


def test_stamped_orders_by_emission_and_sets_injected_at() -> None:
    b = book()
    r1 = CallRecord(id="a", fn="add", args={}, raw="", status="ok", emitted_at=2.0)
    r2 = CallRecord(id="b", fn="add", args={}, raw="", status="ok", emitted_at=1.0)
    b.injected([r1], 3.0)
    out = b.stamped([r1, r2])
    assert [r.id for r in out] == ["b", "a"] and out[1].injected_at == 3.0
    assert out[0].injected_at is None


def test_call_key_is_canonical() -> None:
    assert call_key("f", {"a": 1, "b": "x"}, (), "") == call_key("f", {"b": "x", "a": 1}, (), "")
    assert call_key("f", {"a": [1]}, (), "") != call_key("f", {"a": [2]}, (), "")
    assert call_key("", {}, (), " f( 1,\n 2 ) ") == "f( 1, 2 )"
