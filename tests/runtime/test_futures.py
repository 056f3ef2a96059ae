"""Futures: ``$id`` / ``$id.path`` arguments resolved by the executor (one test per rule)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from asynclm.protocol import Ref
from asynclm.runtime import run_virtual
from asynclm.runtime.executor import Executor
from asynclm.runtime.futures import ReferenceError_, resolve_path, substitute
from asynclm.runtime.records import CallRecord
from asynclm.tools import Toolbox, tool
from tests.runtime.conftest import scripted, sleepy


@dataclass(frozen=True)
class Flight:
    flight_id: str
    seats: list[int]


@tool
async def find_flight(dest: str) -> dict[str, Any]:
    """A flight as a dict."""
    await asyncio.sleep(0.3)
    return {"flight": {"id": f"F-{dest}", "price": 420}, "alternatives": ["A1", "B2", "C3"]}


@tool
async def find_flight_obj(dest: str) -> Flight:
    """A flight as an object."""
    await asyncio.sleep(0.2)
    return Flight(f"F-{dest}", [11, 12])


@tool
async def echo(value: Any) -> Any:
    """Return the value after a short delay."""
    await asyncio.sleep(0.1)
    return value


@tool
async def fail_after(seconds: float) -> str:
    """Raise after a delay."""
    await asyncio.sleep(seconds)
    raise RuntimeError("backend down")


TOOLS = [find_flight, find_flight_obj, echo, fail_after, sleepy]
WAIT = ["[TRAP][END]"] * 6


def run(script: list[str], **kw: Any):
    return scripted([*script, *WAIT, "done"], TOOLS, **kw)


def by_id(r) -> dict[str, CallRecord]:
    return {c.id: c for c in r.calls}


# -- paths ----------------------------------------------------------------------------------------

def test_path_into_dict():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value=$a.flight.id) [END]'])
    assert by_id(r)["b"].value == "F-NYC"
    assert by_id(r)["b"].resolved_args == {"value": "F-NYC"}


def test_path_into_list():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value=$a.alternatives.1) [END]',
             '[CALL] c [HEAD] echo(value=$a["alternatives"][-1]) [END]'])
    assert by_id(r)["b"].value == "B2"
    assert by_id(r)["c"].value == "C3"


def test_path_into_attributes():
    r = run(['[CALL] a [HEAD] find_flight_obj(dest="SFO") [END]',
             '[CALL] b [HEAD] echo(value=$a.flight_id) [END]',
             '[CALL] c [HEAD] echo(value=$a.seats.0) [END]'])
    assert by_id(r)["b"].value == "F-SFO"
    assert by_id(r)["c"].value == 11


def test_path_never_reaches_methods_or_private_attributes():
    f = Flight("F1", [1])
    with pytest.raises(ReferenceError_, match="method"):
        resolve_path("text", Ref("a", ("upper",)))
    with pytest.raises(ReferenceError_):
        resolve_path(f, Ref("a", ("__class__",)))
    with pytest.raises(ReferenceError_):
        resolve_path({"x": 1}, Ref("a", ("y",)))
    with pytest.raises(ReferenceError_):
        resolve_path([1, 2], Ref("a", (5,)))


def test_bad_path_is_an_error_outcome_not_a_crash():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value=$a.flight.nosuch) [END]'])
    b = by_id(r)["b"]
    assert b.status == "error" and "nosuch" in b.error and b.started_at is None
    assert "[INTR] b [HEAD]" in r.transcript


def test_references_nested_in_containers():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value={"ids": [$a.flight.id, "x"], "p": $a.flight.price})'
             ' [END]'])
    assert by_id(r)["b"].value == {"ids": ["F-NYC", "x"], "p": 420}


def test_positional_reference():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo($a.flight.price) [END]'])
    assert by_id(r)["b"].value == 420 and by_id(r)["b"].depends_on == ("a",)


# -- timing ---------------------------------------------------------------------------------------

def test_dependent_starts_the_moment_its_input_resolves():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value=$a.flight.id) [END]'])
    a, b = by_id(r)["a"], by_id(r)["b"]
    assert b.emitted_at < a.ended_at  # written before the input existed
    assert b.started_at == pytest.approx(a.ended_at, abs=1e-9)


def test_dependent_waits_for_all_its_inputs():
    r = run(['[CALL] a [HEAD] sleepy(seconds=0.5, tag="x") [END]',
             '[CALL] b [HEAD] sleepy(seconds=0.1, tag="y") [END]',
             '[CALL] c [HEAD] echo(value=[$a, $b]) [END]'])
    c = by_id(r)["c"]
    assert c.value == ["x", "y"]
    assert c.started_at == pytest.approx(by_id(r)["a"].ended_at, abs=1e-9)
    assert c.depends_on == ("a", "b")


# -- failed dependencies --------------------------------------------------------------------------

def test_failed_dependency_fails_the_dependent_at_once():
    r = run(['[CALL] a [HEAD] fail_after(seconds=0.4) [END]',
             '[CALL] b [HEAD] echo(value=$a) [END]',
             '[CALL] c [HEAD] echo(value=$b) [END]'])
    a, b, c = (by_id(r)[k] for k in "abc")
    assert a.status == "error"
    assert b.status == "error" and b.error_type == "DependencyFailed" and b.started_at is None
    assert c.status == "error" and c.error_type == "DependencyFailed"
    assert b.ended_at == pytest.approx(a.ended_at) and c.ended_at == pytest.approx(a.ended_at)


def test_timed_out_dependency_fails_the_dependent_at_once():
    from asynclm.runtime import SessionConfig

    r = run(['[CALL] a [HEAD] sleepy(seconds=5) [END]',
             '[CALL] b [HEAD] echo(value=$a) [END]'],
            config=SessionConfig(tool_timeout_s=0.5))
    a, b = by_id(r)["a"], by_id(r)["b"]
    assert a.status == "timeout"
    assert b.status == "error" and "timeout" in b.error
    assert b.ended_at == pytest.approx(a.ended_at)
    assert r.latency_s < 1.5


def test_cancelled_dependency_fails_the_dependent_at_once():
    ended: list[CallRecord] = []

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            ex = Executor(Toolbox(TOOLS), group, on_start=lambda i, f: None,
                          on_end=ended.append)
            ex.submit("a", "sleepy", {"seconds": 100})
            ex.submit("b", "echo", {"value": Ref("a")})
            await asyncio.sleep(1.0)
            t_cancel = loop.time()
            assert ex.cancel("a", "user cancelled")
            rec_b = await ex.wait("b")
            return t_cancel, rec_b.ended_at

    t_cancel, b_end = run_virtual(main())
    recs = {r.id: r for r in ended}
    assert recs["a"].status == "cancelled"
    assert recs["b"].status == "error" and "cancelled" in recs["b"].error
    assert b_end == pytest.approx(t_cancel)


# -- unknown ids, forward references, cycles ------------------------------------------------------

def test_unknown_id_is_an_error_interrupt():
    r = run(['[CALL] b [HEAD] echo(value=$zz) [END]'])
    b = by_id(r)["b"]
    assert b.status == "error" and "unknown reference $zz" in b.error
    assert "[INTR] b [HEAD]" in r.transcript and b.injected_at is not None


def test_forward_reference_is_an_error_interrupt_and_the_later_call_still_runs():
    r = run(['[CALL] b [HEAD] echo(value=$c) [END]',
             '[CALL] c [HEAD] echo(value=1) [END]'])
    b, c = by_id(r)["b"], by_id(r)["c"]
    assert b.status == "error" and "written before" in b.error and b.injected_at is not None
    assert c.status == "ok" and c.value == 1


def test_cycle_is_error_interrupts_and_no_hang():
    r = run(['[CALL] a [HEAD] echo(value=$b) [END]',
             '[CALL] b [HEAD] echo(value=$a) [END]',
             '[CALL] s [HEAD] echo(value=$s) [END]'])
    a, b, s = by_id(r)["a"], by_id(r)["b"], by_id(r)["s"]
    assert a.status == "error" and b.status == "error" and s.status == "error"
    assert "own result" in s.error
    assert all(c.injected_at is not None for c in (a, b, s))
    assert r.latency_s < 1.0  # nothing waited on anything


# -- delivery -------------------------------------------------------------------------------------

def test_model_still_receives_each_result_as_an_interrupt():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value=$a.flight.id) [END]'])
    a, b = by_id(r)["a"], by_id(r)["b"]
    assert a.injected_at is not None and b.injected_at is not None
    assert '[INTR] a [HEAD] {"flight"' in r.transcript
    assert '[INTR] b [HEAD] "F-NYC"' in r.transcript


def test_a_dollar_in_a_result_is_never_substituted_again():
    r = run(['[CALL] a [HEAD] echo(value="$b and $a") [END]',
             '[CALL] b [HEAD] echo(value=$a) [END]'])
    assert by_id(r)["b"].value == "$b and $a"
    assert substitute({"x": Ref("a")}, {"a": "$a"}) == {"x": "$a"}


def test_ten_is_not_one_followed_by_zero():
    script = [f'[CALL] {i} [HEAD] echo(value={i}) [END]' for i in range(1, 11)]
    script.append('[CALL] x [HEAD] echo(value=[$10, $1]) [END]')
    r = run(script)
    assert by_id(r)["x"].value == [10, 1]
