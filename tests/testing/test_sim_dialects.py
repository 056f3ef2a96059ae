"""The simulator in every dialect: the oracle completes its task in each of
:data:`~asynclm.protocol.DIALECTS` (ids where the dialect has them, else the runtime's ``c<n>``
in writing order and the echoed call), in virtual time, with the calls it makes in CML; the
:class:`~asynclm.testing.sim.CallLedger` that resolves results, and the dialect-neutral
:class:`~asynclm.testing.sim.CallScript`."""

from __future__ import annotations

import pytest

from asynclm.protocol import CML, DIALECTS, Interrupt, Ref, get_dialect
from asynclm.runtime import Session, SessionResult, run_virtual
from asynclm.testing.sim import (
    CallLedger,
    CallScript,
    ObservesInterrupts,
    OraclePolicy,
    ScriptCall,
    ScriptedPolicy,
    SimCall,
    SimCosts,
    SimEngine,
    SimTask,
    TrapOnce,
    WaitFor,
    task_toolbox,
)
from asynclm.tools import tool

NO_IDS = ("hermes", "hermes-bare", "llama3", "pythonic")  # formats without call ids


def _task() -> SimTask:
    """Independent calls of one tool (results out of writing order), a dependency, and two
    calls of the same tool that differ in one argument only."""
    return SimTask((
        SimCall("a1", "fetch", {"key": "x"}, 0.3),
        SimCall("a2", "fetch", {"key": "y"}, 0.1),
        SimCall("a3", "combine", {"v": Ref("a1")}, 0.1, deps=("a1",)),
        SimCall("a4", "fetch", {"key": "z", "deep": True}, 0.2),
        SimCall("a5", "combine", {"v": Ref("a2"), "w": Ref("a4")}, 0.15),
    ), answer="All done.")


def _run(dialect: str, strategy: str = "async", *, futures: bool = False,
         costs: SimCosts | None = None) -> tuple[SessionResult, OraclePolicy]:
    task, d = _task(), get_dialect(dialect)
    policy = OraclePolicy(task, dialect=d, futures=futures)
    engine = SimEngine(policy, costs or SimCosts(), dialect=d)
    session = Session(engine, task_toolbox(task), strategy=strategy, dialect=d)
    return run_virtual(session.run(task.prompt)), policy


@pytest.mark.parametrize("strategy", ["sync", "async", "async-lazy", "sync-parallel"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_oracle_completes_its_task_in_every_dialect(dialect: str, strategy: str) -> None:
    r, policy = _run(dialect, strategy)
    cml, _ = _run("cml", strategy)
    assert r.stop_reason == "eos" and r.text.strip().endswith("All done.")
    assert [c.status for c in r.calls] == ["ok"] * 5
    assert len(r.calls) == len(cml.calls) and r.n_injected == cml.n_injected == 5
    assert all(c.injected_at is not None for c in r.calls)
    # every result reached the call it answers, in the model's eyes
    assert {k: f"result of {k}" in p for k, p in policy.results.items()} == {
        c.id: True for c in _task().calls}
    # the runtime's ids: the task's where the dialect carries ids, else c1, c2, ... in order
    wire = {k: policy.ledger.wire_id(k) for k in policy.emitted}
    if dialect in NO_IDS:
        assert list(wire.values()) == [f"c{n}" for n in range(1, 6)]
        assert all(c.id_assigned for c in r.calls)
    else:
        assert wire == {k: k for k in policy.emitted} and not any(c.id_assigned for c in r.calls)
    assert [c.id for c in r.calls] == [wire[k] for k in policy.emitted]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_futures_are_written_with_the_runtimes_ids(dialect: str) -> None:
    r, policy = _run(dialect, futures=True)
    assert r.stop_reason == "eos" and [c.status for c in r.calls] == ["ok"] * 5
    by_key = {k: r.call(policy.ledger.wire_id(k)) for k in policy.emitted}
    assert by_key["a3"].depends_on == (policy.ledger.wire_id("a1"),)
    assert by_key["a3"].args == {"v": Ref(policy.ledger.wire_id("a1"))}  # the tool got its value
    assert f"${policy.ledger.wire_id('a1')}" in r.transcript
    assert len(policy.results) == 5


@pytest.mark.parametrize("strategy", ["sync", "async"])
def test_virtual_time_is_the_schedule_in_every_dialect(strategy: str) -> None:
    """With free tokens a session lasts exactly its tools' schedule, whatever the markup."""
    free = SimCosts(tpot_s=0.0, free_traps=True)
    want = {"sync": 0.3 + 0.1 + 0.1 + 0.2 + 0.15, "async": 0.3 + 0.1}[strategy]
    for dialect in DIALECTS:
        r, _ = _run(dialect, strategy, costs=free)
        assert r.latency_s == pytest.approx(want), dialect


# -- the ledger --------------------------------------------------------------------------------


def _ledger(dialect: str) -> tuple[CallLedger, dict[str, str]]:
    led = CallLedger(get_dialect(dialect))
    text = {k: led.write(k, "fetch", {"key": k}) for k in ("a", "b", "c")}
    return led, text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_ledger_resolves_results_out_of_order(dialect: str) -> None:
    led, text = _ledger(dialect)
    d = led.dialect
    assert text["a"] == d.render_call("fetch", {"key": "a"}, "a")
    wire = {k: led.wire_id(k) for k in "abc"}
    assert wire == ({"a": "c1", "b": "c2", "c": "c3"} if dialect in NO_IDS
                    else {"a": "a", "b": "b", "c": "c"})

    def echoed(key: str, result: str) -> Interrupt:
        head = None if dialect in NO_IDS else wire[key]
        body = d.call_body(text[key])
        return Interrupt(head, d.escape_payload(d.echo(body, result)), 0, 0)

    first = led.resolve(echoed("c", '"C"'))
    assert (first.kind, first.key) == ("result", "c")
    assert led.resolve(echoed("a", '"A"')).key == "a"
    assert led.answered == {"a", "c"}
    # partial results and messages, in the dialect's wording, answer nothing
    part = led.resolve(Interrupt(None if dialect in NO_IDS else wire["b"],
                                 d.partial('"half"'), 0, 0))
    assert part.kind == "partial" and part.key == (None if dialect in NO_IDS else "b")
    msg = led.resolve(Interrupt(None if dialect in NO_IDS else "user",
                                d.escape_payload(d.message("user", "hi")), 0, 0))
    assert msg.kind == "message" and "b" not in led.answered
    # a result with neither id nor echo (echo_calls="never"): the oldest unanswered call
    if dialect in NO_IDS:
        assert led.resolve(Interrupt(None, '"B"', 0, 0)).key == "b"
    else:
        assert led.resolve(Interrupt("nobody", '"B"', 0, 0)).kind == "other"


def test_the_ledger_names_calls_as_the_runtime_does() -> None:
    led = CallLedger(CML)
    led.write("c2", "f", {})  # a written id is kept ...
    led.write("a.b", "f", {})  # ... an invalid one cannot be written: the runtime names it
    led.write("x", "f", {"v": Ref("c2", ("k",))})
    assert [led.wire_id(k) for k in led.keys] == ["c2", "c1", "x"]
    assert led.write("y", "f", {"v": Ref("a.b")}).count("$c1") == 1  # references follow
    with pytest.raises(ValueError):
        led.write("x", "f", {})
    # a call the policy wrote itself: its id as the dialect's parser reads it (c2 is taken)
    assert led.record("z", CML.render_call("f", {}, "c2")) == "c3"
    assert led.record("w", CML.render_call("f", {}, "w9")) == "w9"
    assert not CallLedger(get_dialect("hermes")).carries_ids and led.carries_ids
    led.reset()
    assert led.keys == [] and led.write("a.b", "f", {}) and led.wire_id("a.b") == "c1"


# -- the engine and the policies ----------------------------------------------------------------


@tool
def fetch(key: str) -> str:
    """Fetch a key."""
    return key.upper()


def test_a_policy_without_whole_interrupts_gets_the_head() -> None:
    """Policies that only have ``observe(head, payload)`` keep getting it (None: the dialect's
    result frame names no call)."""
    d = get_dialect("hermes")
    policy = ScriptedPolicy([d.render_call("fetch", {"key": "k"}), d.render_trap(),
                             lambda seen: f"Seen: {sorted(seen)}"])
    assert not isinstance(policy, ObservesInterrupts)
    assert isinstance(OraclePolicy(_task()), ObservesInterrupts)
    r = run_virtual(Session(SimEngine(policy, dialect=d), [fetch], dialect=d).run("go"))
    assert r.text.strip().endswith("Seen: ['']") and policy.results[""].endswith('"K"}')


def test_the_oracle_does_not_take_a_partial_or_a_message_for_a_result() -> None:
    d = get_dialect("hermes")
    policy = OraclePolicy(SimTask((SimCall("a1", "fetch", {"key": "x"}, 0.1),)), dialect=d)
    policy.next_text()
    policy.observe_interrupt(Interrupt(None, d.partial('"half"'), 0, 0))
    policy.observe_interrupt(Interrupt(None, d.message("user", "hurry"), 0, 0))
    assert policy.results == {} and policy.next_text() == d.render_trap()
    assert policy.partials == [(None, d.partial('"half"'))]  # no id, no echo: nobody's
    assert policy.messages == [(None, d.message("user", "hurry"))]
    policy.observe_interrupt(Interrupt(None, d.echo('{"name": "fetch", "arguments": {"key": '
                                                    '"x"}}', '"X"'), 0, 0))
    assert policy.results.keys() == {"a1"} and policy.next_text() == "All done."


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_call_script_writes_calls_on_lines_of_their_own(dialect: str) -> None:
    d = get_dialect(dialect)
    inside: list[int] = []
    script = CallScript(["Let me look.", ScriptCall("a", "fetch", {"key": "k"},
                                                    between=lambda: inside.append(1)),
                         TrapOnce(), WaitFor("a"), lambda s: f"It is {s.results['a'][-5:]}"],
                        dialect=d)
    assert script.next_text() == "Let me look."
    first = script.next_text()
    assert first is not None and first.startswith("\n") and not inside
    second = script.next_text()
    assert inside == [1] and first[1:] + (second or "") == d.render_call("fetch", {"key": "k"}, "a")
    assert script.next_text() == d.render_trap()  # TrapOnce
    assert script.next_text() == d.render_trap()  # waiting for a
    r = run_virtual(Session(SimEngine(CallScript(script.steps, dialect=d), dialect=d), [fetch],
                            dialect=d).run("go"))
    assert r.stop_reason == "eos" and '"K"' in r.text
