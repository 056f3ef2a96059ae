"""Futures: ``$id`` / ``$id.path`` arguments resolved by the executor (one test per rule)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynclm.protocol import Ref
from asynclm.protocol.body import REF_ID_RE
from asynclm.runtime import run_virtual
from asynclm.runtime.executor import Executor
from asynclm.runtime.futures import (
    ReferenceError_,
    Template,
    bind_string_refs,
    find_refs,
    resolve_path,
    split_string_refs,
    substitute,
)
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


# -- references inside string arguments (issue 20, defect 5) --------------------------------------

@tool
async def make_meeting(topic: str = "sync") -> dict[str, Any]:
    """A meeting record, after a delay."""
    await asyncio.sleep(0.4)
    return {"event_id": "E-42", "topic": topic, "coordinates": [[48.8, 2.3], [52.5, 13.4]]}


@tool
async def create_event(title: str) -> str:
    """Return the title it was given."""
    await asyncio.sleep(0.1)
    return title


STR_TOOLS = [*TOOLS, make_meeting, create_event]


def run_str(script: list[str], **kw: Any):
    return scripted([*script, *WAIT, "done"], STR_TOOLS, **kw)


def test_reference_inside_a_string_is_interpolated_and_waited_for():
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]',
                 '[CALL] e1 [HEAD] create_event(title="Meeting ID: $m1.event_id") [END]'])
    m1, e1 = by_id(r)["m1"], by_id(r)["e1"]
    assert e1.status == "ok"
    assert e1.resolved_args == {"title": "Meeting ID: E-42"}  # what the tool received
    assert e1.value == "Meeting ID: E-42"
    assert e1.depends_on == ("m1",)
    assert e1.emitted_at < m1.ended_at
    assert e1.started_at == pytest.approx(m1.ended_at, abs=1e-9)
    assert e1.args == {"title": "Meeting ID: $m1.event_id"}  # the record shows what was written


def test_string_reference_in_a_json_body():
    body = '{"name": "create_event", "arguments": {"title": "Meeting $m1.event_id ($m1.topic)"}}'
    r = run_str(['[CALL] m1 [HEAD] make_meeting(topic="plan") [END]',
                 f'[CALL] e1 [HEAD] {body} [END]'])
    assert by_id(r)["e1"].value == "Meeting E-42 (plan)" and by_id(r)["e1"].depends_on == ("m1",)


def test_string_reference_is_never_a_prefix_of_a_longer_id():
    script = [f'[CALL] {i} [HEAD] echo(value="v{i}") [END]' for i in range(1, 11)]
    script.append('[CALL] x [HEAD] echo(value="$10 and $1, then $1.") [END]')
    r = run(script)
    assert by_id(r)["x"].value == "v10 and v1, then v1."
    assert by_id(r)["x"].depends_on == ("10", "1")
    # with only $1 known, "$10" is an unknown token: left as written, not "$1" + "0"
    r = run(['[CALL] 1 [HEAD] echo(value="one") [END]',
             '[CALL] x [HEAD] echo(value="$10 but $1") [END]'])
    assert by_id(r)["x"].value == "$10 but one" and by_id(r)["x"].depends_on == ("1",)


def test_other_dollars_stay_literal_and_double_dollar_escapes_a_reference():
    text = "$m1.event_id costs $5.00 at $HOME, $ alone, $zz, $$m1, $$5, $$, $$$m1.event_id $$zz"
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]',
                 f'[CALL] e1 [HEAD] create_event(title="{text}") [END]'])
    e1 = by_id(r)["e1"]
    assert e1.status == "ok", e1.error
    assert e1.value == "E-42 costs $5.00 at $HOME, $ alone, $zz, $m1, $$5, $$, $$m1.event_id $$zz"
    assert e1.depends_on == ("m1",)


def test_escaped_reference_alone_is_no_dependency():
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]',
                 '[CALL] e1 [HEAD] create_event(title="write $$m1.event_id") [END]'])
    m1, e1 = by_id(r)["m1"], by_id(r)["e1"]
    assert e1.value == "write $m1.event_id" and e1.depends_on == ()
    assert e1.started_at < m1.ended_at  # nothing to wait for


def test_unknown_later_or_own_id_in_a_string_is_text_not_an_error():
    r = run_str(['[CALL] a [HEAD] create_event(title="$a then $b, cost $HOME") [END]',
                 '[CALL] b [HEAD] create_event(title="b") [END]'])
    a = by_id(r)["a"]
    assert a.status == "ok" and a.value == "$a then $b, cost $HOME" and a.depends_on == ()


def test_string_references_nested_in_lists_and_dicts():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value={"notes": ["id $a.flight.id",'
             ' {"p": "price $a.flight.price"}],'
             ' "all": "flight: $a.flight", "n": 3, "$a": "key $a.alternatives.0"}) [END]'])
    b = by_id(r)["b"]
    assert b.value == {
        "notes": ["id F-NYC", {"p": "price 420"}],
        "all": 'flight: {"id":"F-NYC","price":420}',  # non-strings as compact JSON
        "n": 3,
        "$a": "key A1",  # dict keys stay as written
    }
    assert b.depends_on == ("a",)


def test_whole_string_reference_keeps_todays_meaning():
    # Python syntax: a quoted "$a..." is a string, so it gets the value's text;
    # JSON bodies have always read a whole-string reference as the value itself.
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value="$a.flight.price") [END]',
             '[CALL] c [HEAD] {"name": "echo", "arguments": {"value": "$a.flight.price"}} [END]',
             '[CALL] d [HEAD] echo(value=$a.flight.price) [END]'])
    assert by_id(r)["b"].value == "420"
    assert by_id(r)["c"].value == 420 and by_id(r)["d"].value == 420


def test_failed_dependency_in_a_string_fails_the_call():
    r = run(['[CALL] a [HEAD] fail_after(seconds=0.2) [END]',
             '[CALL] b [HEAD] echo(value="got $a") [END]'])
    b = by_id(r)["b"]
    assert b.status == "error" and b.error_type == "DependencyFailed" and b.started_at is None


def test_bad_path_in_a_string_is_an_error_outcome():
    r = run(['[CALL] a [HEAD] find_flight(dest="NYC") [END]',
             '[CALL] b [HEAD] echo(value="id: $a.flight.nosuch") [END]'])
    b = by_id(r)["b"]
    assert b.status == "error" and "nosuch" in b.error and b.started_at is None


def test_path_into_a_list_without_an_index_says_how_to_index():
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]',
                 '[CALL] e1 [HEAD] create_event(title="at $m1.coordinates.lat") [END]',
                 '[CALL] e2 [HEAD] echo(value=$m1.coordinates.lat) [END]',
                 '[CALL] l [HEAD] echo(value=[1, 2]) [END]',
                 '[CALL] e3 [HEAD] echo(value=$l.x) [END]'])
    for cid, where in (("e1", "$m1.coordinates"), ("e2", "$m1.coordinates"), ("e3", "$l")):
        rec = by_id(r)[cid]
        assert rec.status == "error" and rec.started_at is None
        assert "is a list" in rec.error and f"{where}.0" in rec.error, rec.error
    # a list value itself is fine: it is rendered as compact JSON text
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]',
                 '[CALL] e1 [HEAD] create_event(title="at $m1.coordinates.0") [END]'])
    assert by_id(r)["e1"].value == "at [48.8,2.3]"


def test_executor_records_string_dependencies_directly():
    async def main() -> CallRecord:
        async with asyncio.TaskGroup() as group:
            ex = Executor(Toolbox(TOOLS), group, on_start=lambda i, f: None, on_end=lambda r: None)
            ex.submit("a", "echo", {"value": {"k": "v"}})
            ex.submit("b", "echo", {"value": ["$a.k!", "$b", "$c"]})
            return await ex.wait("b")

    rec = run_virtual(main())
    assert rec.value == ["v!", "$b", "$c"] and rec.depends_on == ("a",)


def test_a_repeated_failing_call_with_a_string_reference_counts_as_a_repeat():
    bad = '[CALL] {} [HEAD] create_event(title="at $m1.coordinates.lat") [END]\n[TRAP][END]\n'
    r = run_str(['[CALL] m1 [HEAD] make_meeting() [END]\n[TRAP][END]\n',
                 bad.format("e1"), bad.format("e2")])
    assert by_id(r)["e1"].status == "error" and by_id(r)["e2"].status == "error"
    assert r.counters["repeats"] == 1  # as for the same call without a reference


def test_split_string_refs_grammar():
    known = {"m1", "1", "10"}
    assert split_string_refs("no dollar", known) is None
    assert split_string_refs("$5.00, $HOME, $, $zz, $$5, $$", known) is None
    assert split_string_refs("see $m1.", known) == ["see ", Ref("m1"), "."]
    assert split_string_refs("$10$1", known) == [Ref("10"), Ref("1")]
    assert split_string_refs("$m1-x", known) is None  # the token is "m1-x": not an id
    assert split_string_refs("""a $m1["k"][0] b $m1['a b'].z""", known) == [
        "a ", Ref("m1", ("k", 0)), " b ", Ref("m1", ("a b", "z"))]
    assert split_string_refs("$$m1.x, $$$1", known) == ["$m1.x, $$1"]


def test_bind_string_refs_keeps_unchanged_values_and_templates_survive_copies():
    import copy
    import pickle

    args = {"a": "plain $x", "b": ["$5", {"c": 1}], "$m1": 2}
    assert bind_string_refs(args, {"m1"}) is args  # nothing to bind: the same object
    bound = bind_string_refs({"t": ("x $m1", "$$m1")}, {"m1"})
    t = bound["t"][0]
    assert isinstance(t, Template) and t == "x $m1" and bound["t"][1] == "$m1"
    assert type(bound["t"][1]) is str and isinstance(bound["t"], tuple)
    assert find_refs(bound) == [Ref("m1")]
    for clone in (pickle.loads(pickle.dumps(t)), copy.deepcopy(t)):
        assert isinstance(clone, Template) and clone.parts == t.parts
    assert substitute(bound, {"m1": [1, "é", None]}) == {"t": ('x [1,"é",null]', "$m1")}


def _tokens(s: str) -> set[str]:
    """Every id-grammar token right after a "$" in s (the longest match, as the scanner sees)."""
    return {m.group(0) for i, c in enumerate(s) if c == "$"
            for m in [REF_ID_RE.match(s, i + 1)] if m is not None}


_TEXT = st.text(alphabet="$ab1_-.[]0\"' x", max_size=30)
_IDS = st.sets(st.text(alphabet="ab1_-", min_size=1, max_size=3), max_size=6)


@given(_TEXT, _IDS)
def test_strings_without_a_known_reference_pass_through_unchanged(s: str, ids: set[str]) -> None:
    known = ids - _tokens(s)  # ids that never follow a "$" in s
    value = {"k": [s, (s, {"d": s})]}
    assert split_string_refs(s, known) is None
    assert bind_string_refs(value, known) is value and find_refs(value) == []
    assert substitute(bind_string_refs(value, known), {}) == value


@given(_TEXT, _IDS)
def test_double_dollar_can_write_any_text_literally(s: str, ids: set[str]) -> None:
    known = ids | _tokens(s)  # every "$word" in s is a known id
    escaped = "".join(
        "$$" if c == "$" and (m := REF_ID_RE.match(s, i + 1)) and m.group(0) in known else c
        for i, c in enumerate(s))
    bound = bind_string_refs(escaped, known)
    assert type(bound) is str and bound == s
