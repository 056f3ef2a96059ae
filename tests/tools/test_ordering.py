"""order_key: which calls must keep emission order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from asynclm.tools import SERIAL, Ordered, Tool, tool


def _make(order_by: Any, name: str = "t") -> Tool:
    def t(account: str = "a", items: list[int] | None = None, n: int = 0) -> None:
        """T."""

    return tool(t, name=name, order_by=order_by)


def test_independent_by_default() -> None:
    assert _make(None).order_key({"account": "x"}) is None


def test_argument_name_orders_equal_values_of_this_tool() -> None:
    a, b = _make("account", "a"), _make("account", "b")
    assert a.order_key({"account": "x"}) == a.order_key({"account": "x"})
    assert a.order_key({"account": "x"}) != a.order_key({"account": "y"})
    assert a.order_key({"account": "x"}) != b.order_key({"account": "x"})  # scoped to the tool
    assert a.order_key(a.validate({})) == a.order_key({"account": "a"})  # defaults count


def test_unhashable_values_are_frozen() -> None:
    t = _make("items")
    key = t.order_key({"items": [1, [2, {"k": [3]}]]})
    hash(key)
    assert key == t.order_key({"items": [1, [2, {"k": [3]}]]})
    assert key != t.order_key({"items": [1, [2, {"k": [4]}]]})


@pytest.mark.parametrize("serial", [SERIAL, "*", tool.SERIAL, Tool.SERIAL])
def test_serial_orders_every_call_of_the_tool(serial: Any) -> None:
    t = _make(serial)
    assert t.order_by is SERIAL
    assert t.order_key({"account": "x"}) == t.order_key({"account": "y"}) is not None
    assert t.order_key({}) != _make(SERIAL, "other").order_key({})


def test_ordered_group_is_shared_across_tools() -> None:
    fs = Ordered("filesystem")
    cd, ls = _make(fs, "cd"), _make(tool.Ordered("filesystem"), "ls")
    assert cd.order_key({"account": "x"}) == ls.order_key({"n": 3})
    assert cd.order_key({}) != _make(Ordered("math"), "add").order_key({})


def test_ordered_group_by_argument() -> None:
    deposit = _make(Ordered("bank", by="account"), "deposit")
    withdraw = _make(Ordered("bank", by="account"), "withdraw")
    assert deposit.order_key({"account": "x"}) == withdraw.order_key({"account": "x"})
    assert deposit.order_key({"account": "x"}) != withdraw.order_key({"account": "y"})
    with pytest.raises(ValueError, match="not a parameter"):
        _make(Ordered("bank", by="acct"))


def test_callable_order_by() -> None:
    def key(args: Mapping[str, Any]) -> Any:
        return None if args.get("n", 0) == 0 else ("shard", args["n"] % 2)

    t = _make(key)
    assert t.order_key({"n": 0}) is None
    assert t.order_key({"n": 1}) == t.order_key({"n": 3}) != t.order_key({"n": 2})
    assert _make(lambda args: [args.get("n")]).order_key({"n": 1}) == (1,)


def test_invalid_order_by() -> None:
    with pytest.raises(TypeError, match="order_by"):
        _make(3)
    with pytest.raises(ValueError, match="not a parameter"):
        _make("nope")


def test_order_by_survives_replace_and_can_be_changed() -> None:
    t = _make("account")
    assert t.replace(timeout=1.0).order_by == "account"
    assert t.replace(order_by=None).order_key({"account": "x"}) is None
