"""The validation fast path for plain signatures returns exactly what pydantic returns."""

from __future__ import annotations

from typing import Annotated

import pytest
from hypothesis import given, strategies as st
from pydantic import Field

from asynclm import tool
from asynclm.tools import ToolArgumentError
from asynclm.tools._validation import ArgumentValidator


@tool
def plain(a: int, b: str = "x", c: float | None = None, d: bool = False) -> int:
    """A tool whose parameters are all plain.

    Args:
        a: An integer.
        b: A string.
    """
    return a


@tool
def constrained(a: Annotated[int, Field(ge=0)], b: list[int] | None = None) -> int:
    """A tool with a constraint and a container."""
    return a



def _without_fast_path(v):
    clone = ArgumentValidator(v.model, v.params, fill_defaults=True)
    clone._plain = None
    return clone


def test_only_plain_signatures_get_the_fast_path():
    assert plain._validator._plain is not None
    assert constrained._validator._plain is None


values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                   st.text(max_size=8), st.lists(st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), values, max_size=5))
def test_fast_and_pydantic_agree(args):
    slow = _without_fast_path(plain._validator)
    try:
        expected = slow.validate("plain", args)
    except ToolArgumentError as exc:
        with pytest.raises(ToolArgumentError) as got:
            plain.validate(args)
        assert str(got.value) == str(exc)
        return
    got = plain.validate(args)
    assert got == expected and [type(v) for v in got.values()] == [
        type(v) for v in expected.values()]
