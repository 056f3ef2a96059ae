"""Rendering tool results for the model never ends a run, and its cost is bounded (issue 20,
defects 2 and 7): a result is rendered once, when its call ends; a result that cannot be
rendered ends its call with an ``UnrenderableResult`` error the model is told about; every
interrupt payload has a bounded size, whatever the model or the tools wrote."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from asynclm.protocol import Interrupt, Parser, format_value
from asynclm.runtime import SessionConfig
from asynclm.runtime.interrupts import InterruptManager
from asynclm.runtime.records import CallRecord
from asynclm.tools import tool

from .conftest import scripted

DEFAULT_RESULT_CHARS = 2000  # InterruptManager's default max_value_chars


def _interrupts(transcript: str) -> list[Interrupt]:
    p = Parser(transcript=True)
    return [e for e in p.feed(transcript) + p.close() if isinstance(e, Interrupt)]


def _run_returning(value: Any, **kw: Any):
    @tool
    async def produce() -> Any:
        """Return the value under test."""
        return value

    try:
        return scripted(["[CALL] p [HEAD] produce() [END]", "[TRAP][END]", "done"],
                        tools=[produce], **kw)
    except BaseException as exc:  # noqa: BLE001 - a failure, never a crash of the test run
        pytest.fail(f"the run raised {type(exc).__name__}", pytrace=False)


class _Raises:
    """An object whose every dunder used by rendering raises ``exc``."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __repr__(self) -> str:
        raise self.exc

    def __str__(self) -> str:
        raise self.exc

    def __len__(self) -> int:
        raise self.exc

    def __iter__(self) -> Any:
        raise self.exc


def _deep(n: int) -> list[Any]:
    v: list[Any] = []
    for _ in range(n):
        v = [v]
    return v


class _BadList(list):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        raise RuntimeError("no iterating")

    def __len__(self) -> int:
        raise RuntimeError("no len")


class _BadDict(dict):  # type: ignore[type-arg]
    def items(self) -> Any:
        raise RuntimeError("no items")

    def __iter__(self) -> Any:
        raise RuntimeError("no iterating")


@dataclasses.dataclass
class _Holder:
    x: Any


class _BadDump:
    def model_dump(self, mode: str = "python") -> Any:
        raise SystemExit("model_dump exits")

    def __repr__(self) -> str:
        return "BadDump()"


def test_huge_int_result_does_not_end_the_run() -> None:
    r = _run_returning(10**5000)
    assert r.stop_reason == "eos"
    (c,) = r.calls
    assert c.status == "ok" and c.value == 10**5000
    (i,) = _interrupts(r.transcript)
    assert i.id == "p" and "e+5000" in i.payload and len(i.payload) < 300


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), asyncio.CancelledError(),
                                 GeneratorExit(), RuntimeError("boom")])
def test_result_whose_repr_raises(exc: BaseException) -> None:
    r = _run_returning(_Raises(exc))
    assert r.stop_reason == "eos"
    (c,) = r.calls
    (i,) = _interrupts(r.transcript)
    if isinstance(exc, Exception):  # an ordinary failure of repr: a placeholder is shown
        assert c.status == "ok" and i.payload == "<_Raises object>"
        return
    assert c.status == "error" and c.error_type == "UnrenderableResult"
    assert type(exc).__name__ in (c.error or "") and c.value is None
    assert i.id == "p" and "error" in i.payload and "UnrenderableResult" not in i.payload
    assert "could not be rendered" in i.payload


def test_unrenderable_nested_value_is_an_error_outcome() -> None:
    r = _run_returning({"a": [1, _Raises(SystemExit(1))]})
    (c,) = r.calls
    assert c.status == "error" and c.error_type == "UnrenderableResult"
    r = _run_returning(_BadDump())
    (c,) = r.calls
    assert c.status == "error" and c.error_type == "UnrenderableResult"


@pytest.mark.parametrize("value", [
    _deep(100_000), _BadList([1, 2]), _BadDict(a=1), _Holder(_deep(5000)),
    float("nan"), [float("inf"), float("-inf")], {(1, 2): _deep(50_000)},
], ids=["deep", "badlist", "baddict", "deep-dataclass", "nan", "inf", "tuplekey-deep"])
def test_odd_results_render(value: Any) -> None:
    r = _run_returning(value)
    assert r.stop_reason == "eos"
    (c,) = r.calls
    assert c.status == "ok" and c.rendered is not None
    (i,) = _interrupts(r.transcript)
    assert i.id == "p" and i.payload and len(i.payload) <= DEFAULT_RESULT_CHARS + 100


def test_cyclic_results_render() -> None:
    cyc: dict[str, Any] = {"a": 1}
    cyc["self"] = cyc
    big: list[Any] = list(range(100_000))
    big.append(big)
    for value, want in [(cyc, "{'a': 1, 'self': {...}}"), (big, None)]:
        r = _run_returning(value)
        (c,) = r.calls
        assert c.status == "ok"
        (i,) = _interrupts(r.transcript)
        assert len(i.payload) <= DEFAULT_RESULT_CHARS + 100
        if want is not None:
            assert i.payload == want


def test_huge_bytes_and_strings_render_bounded() -> None:
    for value in [b"\xff" * 20_000_000, "y" * 20_000_000, ["z" * 20_000_000],
                  {"k": b"a" * 20_000_000}]:
        r = _run_returning(value)
        (c,) = r.calls
        assert c.status == "ok"
        (i,) = _interrupts(r.transcript)
        assert len(i.payload) <= DEFAULT_RESULT_CHARS + 100


def test_result_is_rendered_once_when_the_call_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    import asynclm.runtime.interrupts as interrupts

    rendered: list[Any] = []

    def counting(value: Any, **kw: Any) -> str:
        rendered.append(value)
        return format_value(value, **kw)

    monkeypatch.setattr(interrupts, "format_value", counting)

    class Counted:
        def __repr__(self) -> str:
            return "Counted()"

    r = _run_returning(Counted())
    (c,) = r.calls
    assert c.status == "ok" and c.rendered == "Counted()"
    (i,) = _interrupts(r.transcript)
    assert i.payload == "Counted()" and len(rendered) == 1


def test_fire_and_forget_result_is_rendered_too() -> None:
    r = _run_returning(_Raises(SystemExit(0)), config=SessionConfig(ids="strict"))
    assert r.stop_reason == "eos"


def test_huge_malformed_call_gives_a_bounded_interrupt() -> None:
    body = "add(a=1, b=" + "x" * 5_000_000 + ")"
    r = scripted(["[CALL] m [HEAD] " + body + " [END]", "done"])
    (c,) = r.calls
    assert c.status == "error" and c.error_type == "MalformedCall"
    (i,) = _interrupts(r.transcript)
    bound = InterruptManager().max_payload_chars
    assert bound < 5000
    assert i.id == "m" and len(i.payload) <= bound
    assert i.payload.startswith("add(a=1, b=xxx") and "truncated" in i.payload


def test_payload_bound_holds_for_errors_messages_and_echoes() -> None:
    im = InterruptManager(echo="always")
    huge = "q" * 1_000_000
    recs = [
        CallRecord(id="a", fn="f", args={}, raw=f"[CALL] a [HEAD] f({huge}) [END]",
                   status="error", error=huge, error_type="ParseError"),
        CallRecord(id="b", fn="f", args={}, raw=f"[CALL] b [HEAD] f({huge}) [END]",
                   status="ok", value=huge, repeat_of="a"),
        CallRecord(id="c", fn="f", args={}, raw="f()", status="cancelled", error=huge),
    ]
    for rec in recs:
        assert len(im.payload(rec)) <= im.max_payload_chars
    from asynclm.runtime.control import Message

    segs = im.render([Message(sender="user", text=huge)])
    assert len(segs[1].text) <= im.max_payload_chars + 1


def test_ordinary_payloads_unchanged() -> None:
    im = InterruptManager(echo="always")
    rec = CallRecord(id="a", fn="f", args={}, raw="[CALL] a [HEAD] f(x=1) [END]", status="ok",
                     value={"x": [1, 2]})
    assert im.payload(rec) == 'f(x=1) -> {"x": [1, 2]}'
    err = CallRecord(id="a", fn="f", args={}, raw="[CALL] a [HEAD] f(x=1) [END]",
                     status="error", error="ValueError: bad")
    assert im.payload(err) == "f(x=1) -> error: ValueError: bad"


def test_an_exception_whose_str_raises_is_still_an_error_outcome() -> None:
    """The tool's exception is described by its type when its own ``__str__`` fails."""
    class Weird(Exception):
        def __str__(self) -> str:
            raise SystemExit("str of the exception")

    @tool
    def raises_weird() -> str:
        """Raise an exception that cannot be printed."""
        raise Weird()

    r = scripted(["[CALL] w [HEAD] raises_weird() [END]", "[TRAP][END]", "done"], [raises_weird])
    rec = r.call("w")
    assert rec.status == "error" and rec.error_type == "Weird" and rec.error == "Weird"
