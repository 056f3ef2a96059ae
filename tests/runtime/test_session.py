"""The session loop on the simulator: calls, interrupts, traps, strategies, events."""

from __future__ import annotations

import asyncio

import pytest

from asynclm.testing.sim import (
    OraclePolicy, ScriptedPolicy, SimCall, SimCosts, SimEngine, SimTask, task_toolbox,
)
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.protocol import Interrupt, Parser
from asynclm.runtime import Session, SessionConfig, run_sync, run_virtual
from asynclm.runtime import events as ev

from .conftest import add, scripted, sleepy


def _task(durations, deps=None):
    deps = deps or {}
    calls = tuple(
        SimCall(f"k{i}", "fetch", {"key": f"item{i}"}, d, deps=tuple(deps.get(i, ())))
        for i, d in enumerate(durations)
    )
    return SimTask(calls, answer="Finished.")


def _run(task, strategy, **costs):
    engine = SimEngine(OraclePolicy(task), SimCosts(**costs))
    session = Session(engine, task_toolbox(task), strategy=get_strategy(strategy))
    return run_virtual(session.run(task.prompt))


def _interrupts(transcript):
    p = Parser(transcript=True)
    return [e for e in p.feed(transcript) + p.close() if isinstance(e, Interrupt)]


@pytest.mark.parametrize("strategy", ["sync", "sync-parallel", "async", "async-lazy", "async-naive",
                                      "sync-reprefill", "sync-parallel-reprefill"])
def test_every_strategy_completes_every_call_once(strategy):
    task = _task([0.3, 0.05, 0.2, 0.1])
    r = _run(task, strategy)
    assert r.stop_reason == "eos"
    assert r.text.strip().endswith("Finished.")
    assert sorted(c.id for c in r.calls) == ["k0", "k1", "k2", "k3"]
    assert all(c.status == "ok" and c.injected_at is not None for c in r.calls)
    assert sorted(i.id for i in _interrupts(r.transcript)) == ["k0", "k1", "k2", "k3"]


def test_async_beats_sync_parallel_beats_sync():
    task = _task([0.3, 0.05, 0.2, 0.1])
    lat = {s: _run(task, s).latency_s for s in ("sync", "sync-parallel", "async")}
    assert lat["async"] < lat["sync-parallel"] < lat["sync"]


def test_async_naive_pays_ttft_per_injection():
    task = _task([0.3, 0.05, 0.2, 0.1])
    fast = _run(task, "async", ttft_s=0.3)
    naive = _run(task, "async-naive", ttft_s=0.3)
    assert naive.latency_s > fast.latency_s + 0.3  # at least one more request
    assert naive.trace.breakdown().prefill_s > fast.trace.breakdown().prefill_s


def test_sync_parallel_reprefill_pays_ttft_once_per_round():
    task = _task([0.3, 0.05, 0.2, 0.1])
    cached = _run(task, "sync-parallel", ttft_s=0.3)
    api = _run(task, "sync-parallel-reprefill", ttft_s=0.3)
    assert api.latency_s == pytest.approx(cached.latency_s + 0.3)  # one round: one more request
    assert api.trace.breakdown().prefill_s == pytest.approx(0.6)


def test_calls_run_while_the_model_decodes():
    task = _task([0.5, 0.5, 0.5])
    r = _run(task, "async")
    k0 = r.call("k0")
    k1 = r.call("k1")
    assert k0.started_at < k1.emitted_at  # k0 ran while k1 was being written
    assert r.trace.breakdown().overlap_s > 0


def test_dependent_call_waits_for_result_via_trap():
    task = _task([0.2, 0.1], deps={1: ["k0"]})
    r = _run(task, "async")
    assert r.call("k1").emitted_at >= r.call("k0").injected_at
    assert r.counters["traps"] >= 1


def test_event_stream_types_and_order():
    task = _task([0.2, 0.1])
    engine = SimEngine(OraclePolicy(task), SimCosts())
    session = Session(engine, task_toolbox(task))

    async def collect():
        return [e async for e in session.stream("go")]

    events = run_virtual(collect())
    types = [e.type for e in events]
    assert types[-1] == "done"
    for name in ("text.delta", "call.emitted", "call.started", "call.completed",
                 "interrupt.injected", "trap"):
        assert name in types, name
    first = {t: types.index(t) for t in set(types)}
    assert first["call.emitted"] < first["call.started"] < first["call.completed"] < first[
        "interrupt.injected"]
    done = events[-1]
    assert isinstance(done, ev.Done) and done.result.stop_reason == "eos"


def test_calls_stream_as_they_are_written():
    """call.delta events carry exactly the call blocks' text, token by token, each block
    complete before its call.emitted (whose raw it equals); prose is never in them. A call
    whose forged ending is rolled back ends with a raw that its deltas begin with."""
    seen: list[ev.StreamEvent] = []
    engine = SimEngine(ScriptedPolicy([
        "Let me look. ", '[CALL] a [HEAD] add(a=1, b=2) [END]', " and ",
        '[CALL] b [HEAD] add(a=3, b=4) -> 7 [END]\n', "[TRAP][END]\n", "done"]), SimCosts())
    r = run_virtual(Session(engine, [add], system="t").run("go", on_event=seen.append))
    assert [c.status for c in r.calls] == ["ok", "ok"]
    blocks, current = [], ""
    for e in seen:
        if isinstance(e, ev.CallDelta):
            current += e.delta
        elif isinstance(e, ev.CallEmitted):
            blocks.append((current, e.raw))
            current = ""
    assert blocks[0] == ("[CALL] a [HEAD] add(a=1, b=2) [END]",) * 2
    streamed, raw = blocks[1]
    assert raw == "[CALL] b [HEAD] add(a=3, b=4) " and streamed.startswith(raw)
    assert len([e for e in seen if isinstance(e, ev.CallDelta)]) > 10  # token by token
    assert "look" not in "".join(e.delta for e in seen if isinstance(e, ev.CallDelta))


def test_stream_closed_early_cancels_calls():
    task = _task([5.0, 5.0])
    engine = SimEngine(OraclePolicy(task), SimCosts())
    session = Session(engine, task_toolbox(task))

    async def first_started():
        agen = session.stream("go")
        async for e in agen:
            if e.type == "call.started":
                break
        await agen.aclose()
        await asyncio.sleep(0)
        return {t.get_name() for t in asyncio.all_tasks()} - {asyncio.current_task().get_name()}

    leftover = run_virtual(first_started())
    assert not [n for n in leftover if n.startswith("asynclm-call")]


def test_run_sync_refuses_inside_event_loop():
    engine = SimEngine(OraclePolicy(_task([0.1])), SimCosts())
    session = Session(engine, task_toolbox(_task([0.1])))

    async def inside():
        with pytest.raises(RuntimeError, match="running event loop"):
            run_sync(session, "go")

    asyncio.run(inside())
    assert run_sync(session, "go").stop_reason == "eos"


def test_unknown_tool_and_invalid_args_become_error_interrupts():
    r = scripted([
        '[CALL] a [HEAD] nosuch(x=1) [END]',
        '[CALL] b [HEAD] add(a="not a number", b=2) [END]',
        '[CALL] c [HEAD] add(a=1, b=2) [END][TRAP][END]',
        "ok",
    ])
    by = {c.id: c for c in r.calls}
    assert by["a"].status == "error" and "nosuch" in by["a"].error
    assert by["b"].status == "error" and by["b"].started_at is None
    assert by["c"].status == "ok" and by["c"].value == 3
    payloads = {i.id: i.payload for i in _interrupts(r.transcript)}
    assert "error" in payloads["a"] and "error" in payloads["b"] and payloads["c"].endswith("3")


def test_malformed_call_is_an_error_interrupt():
    r = scripted(['[CALL] m [HEAD] add(a=1, b=__import__("os")) [END]', "done"])
    (c,) = r.calls
    assert c.status == "error" and "malformed" in c.error
    assert [i.id for i in _interrupts(r.transcript)] == [c.id]


def test_calls_without_ids_get_ids_and_echo():
    r = scripted(['[CALL] add(a=1, b=2) [END]', '[CALL] add(a=3, b=4) [END]', "[TRAP][END]", "x"])
    assert [c.id for c in r.calls] == ["c1", "c2"]
    payloads = {i.id: i.payload for i in _interrupts(r.transcript)}
    assert payloads["c1"] == "add(a=1, b=2) -> 3"


def test_strict_ids_are_fire_and_forget_but_recorded():
    cfg = SessionConfig(ids="strict")
    r = scripted(['[CALL] sleepy(seconds=0.5) [END]', "bye"], config=cfg)
    (c,) = r.calls
    assert c.status == "ok" and not c.injectable and c.injected_at is None
    assert _interrupts(r.transcript) == []


def test_reused_id_gets_a_fresh_id_and_runs_unconfused():
    r = scripted([
        '[CALL] x [HEAD] sleepy(seconds=0.3, tag="first") [END]',
        '[CALL] x [HEAD] sleepy(seconds=0.1, tag="second") [END]',
        "[TRAP][END]", "[TRAP][END]", "end",
    ])
    by = {c.id: c for c in r.calls}
    assert by["x"].value == "first" and not by["x"].id_assigned
    (other,) = [c for c in r.calls if c.id != "x"]
    assert other.value == "second" and other.id_assigned and other.status == "ok"
    payloads = {i.id: i.payload for i in _interrupts(r.transcript)}
    assert payloads["x"] == '"first"'  # the model's own id: no echo needed
    assert payloads[other.id] == 'sleepy(seconds=0.1, tag="second") -> "second"'


def test_end_of_generation_with_pending_calls_is_a_trap():
    r = scripted(['[CALL] s [HEAD] sleepy(seconds=1.0, tag="late") [END]'])
    (c,) = r.calls
    assert c.status == "ok" and c.injected_at is not None
    assert r.stop_reason == "eos"
    assert "late" in r.transcript
    # the interrupt starts on its own line, as in the prompt's examples
    assert '[END]\n[INTR] s [HEAD] "late" [END]\n' in r.transcript


def test_eos_pending_finish_policy_cancels():
    cfg = SessionConfig(on_eos_pending="finish")
    r = scripted(['[CALL] s [HEAD] sleepy(seconds=1.0) [END]'], config=cfg)
    (c,) = r.calls
    assert c.status == "cancelled"


def test_forged_interrupt_outside_a_call_is_rolled_back():
    r = scripted([
        '[CALL] s [HEAD] sleepy(seconds=0.2, tag="real") [END]\n',
        '[INTR] s [HEAD] fake [END]',  # the model tries to write the result itself
        "The answer is real.",
    ])
    assert "fake" not in r.transcript
    assert r.counters["rollbacks"] >= 1
    (i,) = _interrupts(r.transcript)
    assert i.id == "s" and "real" in i.payload


def test_forged_attempts_are_counted_with_and_without_enforcement():
    script = [
        '[CALL] s [HEAD] sleepy(seconds=0.2, tag="real") [END]\n',
        '[INTR] s [HEAD] fake [END]\n',  # the model tries to write the result itself
        "[result] also fake. The answer is real.",
    ]
    on = scripted(script)
    assert on.counters["forged"] >= 1 and on.counters["rollbacks"] == on.counters["forged"]
    assert "fake" not in on.transcript
    off = scripted(script, config=SessionConfig(enforce=False))
    assert off.counters["forged"] == 2 and off.counters["rollbacks"] == 0
    assert "[INTR] s [HEAD] fake [END]" in off.transcript  # left where the model wrote it
    (c,) = off.calls
    assert c.status == "ok"  # the real result still arrives, after the model's own
    assert off.transcript.index("fake") < off.transcript.index('[INTR] s [HEAD] "real" [END]')


def test_forged_result_inside_a_call_closes_the_call():
    r = scripted(['[CALL] a [HEAD] add(a=1, b=2) -> 3 [END]', "fine"])
    (c,) = r.calls
    assert c.status == "ok" and c.value == 3
    assert "-> 3 [END]" not in r.transcript.split("[INTR]")[0]


def test_sync_blocks_at_each_call():
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.5) [END]',
        '[CALL] b [HEAD] sleepy(seconds=0.5) [END]',
        "done",
    ], strategy="sync")
    a, b = r.calls
    assert b.emitted_at >= a.ended_at


def test_sync_parallel_starts_calls_at_the_trap():
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.5) [END]',
        '[CALL] b [HEAD] sleepy(seconds=0.5) [END]',
        "[TRAP][END]",
        "done",
    ], strategy="sync-parallel")
    a, b = r.calls
    assert a.started_at >= b.emitted_at and abs(a.started_at - b.started_at) < 1e-9
    assert a.injected_at == b.injected_at


def test_futures_reference_earlier_result():
    r = scripted([
        '[CALL] a [HEAD] add(a=1, b=2) [END]',
        '[CALL] b [HEAD] add(a=$a, b=10) [END]',
        "[TRAP][END]", "[TRAP][END]", "done",
    ])
    by = {c.id: c for c in r.calls}
    assert by["b"].value == 13 and by["b"].depends_on == ("a",)


def test_future_of_failed_call_fails_fast_and_unknown_ref_errors():
    r = scripted([
        '[CALL] a [HEAD] nosuch() [END]',
        '[CALL] b [HEAD] add(a=$a, b=1) [END]',
        '[CALL] c [HEAD] add(a=$zz, b=1) [END]',
        "[TRAP][END]", "done",
    ])
    by = {c.id: c for c in r.calls}
    assert by["b"].status == "error" and "dependency a" in by["b"].error
    assert by["c"].status == "error" and "unknown reference" in by["c"].error


def test_max_tokens_stops_and_cancels_pending():
    cfg = SessionConfig(max_tokens=20)
    r = scripted(['[CALL] s [HEAD] sleepy(seconds=100) [END]', "word " * 100], config=cfg)
    assert r.stop_reason == "max_tokens"
    assert r.calls[0].status == "cancelled"


def test_a_repeated_call_reuses_the_delivered_result_and_a_loop_is_cut():
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.5, tag="one") [END]\n[TRAP][END]\n',
        '[CALL] b [HEAD] sleepy(seconds=0.5, tag="one") [END]\n[TRAP][END]\n',  # same call
        '[CALL] c [HEAD] sleepy(seconds=0.5, tag="two") [END]\n[TRAP][END]\n',
        "done",
    ])
    by = {c.id: c for c in r.calls}
    assert by["b"].repeat_of == "a" and by["b"].started_at is None and by["b"].value == "one"
    assert by["c"].repeat_of is None and by["c"].started_at is not None
    assert "same call as a" in r.transcript and r.stop_reason == "eos"
    assert r.counters["repeats"] == 1

    loop = scripted(
        ['[CALL] a [HEAD] sleepy(seconds=0.1, tag="x") [END]\n[TRAP][END]\n']
        + [f'[CALL] r{i} [HEAD] sleepy(seconds=0.1, tag="x") [END]\n[TRAP][END]\n'
           for i in range(10)],
        config=SessionConfig(max_repeats=2))
    assert loop.stop_reason == "repeat_limit" and len(loop.calls) == 4
    assert all(c.status == "ok" for c in loop.calls)


def test_repeats_run_again_when_asked():
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.1, tag="one") [END]\n[TRAP][END]\n',
        '[CALL] b [HEAD] sleepy(seconds=0.1, tag="one") [END]\n[TRAP][END]\n',
    ], config=SessionConfig(repeated_calls="run"))
    assert all(c.started_at is not None and c.repeat_of is None for c in r.calls)


def test_a_result_that_lands_during_an_injection_follows_it_at_once():
    # b completes while a's interrupt is being appended (appends are slow here): b goes in
    # right after a, before the model writes another token.
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.1, tag="a") [END]\n',
        '[CALL] b [HEAD] sleepy(seconds=0.12, tag="b") [END]\n',
        " ".join(["word"] * 60),  # still writing when a's result lands
    ], tpot_s=0.01, costs={"append_tps": 20.0})
    assert '[INTR] a [HEAD] "a" [END]\n[INTR] b [HEAD] "b" [END]\n' in r.transcript


def test_a_repeated_failing_call_counts_as_a_repeat_and_the_loop_is_cut():
    loop = scripted(
        [f'[CALL] r{i} [HEAD] nosuch(x=1) [END]\n[TRAP][END]\n' for i in range(12)]
        + ["done"], config=SessionConfig(max_repeats=3))
    assert loop.stop_reason == "repeat_limit" and len(loop.calls) == 5
    assert all(c.status == "error" for c in loop.calls)
    # the same for a call that does not parse: keyed by its text
    bad = scripted(
        ['[CALL] b [HEAD] {"num1": 3} [END]\n[TRAP][END]\n'] * 12 + ["done"],
        config=SessionConfig(max_repeats=3))
    assert bad.stop_reason == "repeat_limit" and bad.counters["malformed"] == 5
    # ... under a fresh id each time (as the 1.5B writes it): the id is not part of the key
    renamed = scripted(
        [f'[CALL] b{i} [HEAD] add(a=x["k"], b=1) [END]\n[TRAP][END]\n' for i in range(12)]
        + ["done"], config=SessionConfig(max_repeats=3))
    assert renamed.stop_reason == "repeat_limit" and renamed.counters["malformed"] == 5
    # a corrected call is not a repeat
    fixed = scripted([
        '[CALL] a [HEAD] add(a=1) [END]\n[TRAP][END]\n',
        '[CALL] b [HEAD] add(a=1, b=2) [END]\n[TRAP][END]\n', "done"])
    assert fixed.stop_reason == "eos" and fixed.counters["repeats"] == 0


def test_a_degenerate_cycle_ends_the_turn_long_before_the_token_cap():
    # the simulator's tokenizer makes a token of each digit run and each space
    r = scripted(["510! is 1551 ", "17 557 " * 400], config=SessionConfig(max_tokens=4000))
    assert r.stop_reason == "repetition" and r.n_generated < 150
    ok = scripted(["Primes: " + ", ".join(str(p) for p in range(2, 400)) + "."],
                  config=SessionConfig(max_tokens=4000))
    assert ok.stop_reason == "eos"
    off = scripted(["ab " * 200], config=SessionConfig(max_tokens=100, loop_window=0))
    assert off.stop_reason == "max_tokens"


def test_async_lazy_runs_calls_at_once_but_delivers_only_when_the_model_waits():
    script = [
        '[CALL] a [HEAD] sleepy(seconds=0.05, tag="a") [END]\n',
        '[CALL] b [HEAD] sleepy(seconds=0.3, tag="b") [END]\n',
        " ".join(f"w{i}" for i in range(40)) + "\n",  # a's result is ready long before this ends
        "[TRAP][END]\n", "done",
    ]
    lazy = scripted(script, strategy="async-lazy")
    eager = scripted(script, strategy="async")
    for r in (lazy, eager):
        assert r.stop_reason == "eos" and [c.status for c in r.calls] == ["ok", "ok"]
        assert r.calls[0].started_at == r.calls[0].emitted_at  # started on emission
    # async injects a's result mid-text; async-lazy holds it until the trap
    assert eager.transcript.index("[INTR] a") < eager.transcript.index("[TRAP]")
    words_end = lazy.transcript.index("w39\n")
    assert lazy.transcript.index("[INTR] a") > words_end
    assert lazy.transcript.index("[INTR] b") > words_end


def test_async_lazy_waits_at_a_trap_for_the_next_result_not_for_all():
    r = scripted([
        '[CALL] a [HEAD] sleepy(seconds=0.5, tag="a") [END]\n',
        '[CALL] b [HEAD] sleepy(seconds=2.0, tag="b") [END]\n',
        "[TRAP][END]\n", "done",
    ], strategy="async-lazy")
    assert r.stop_reason == "eos"
    a, b = r.calls
    assert a.injected_at is not None and b.injected_at is not None
    assert a.injected_at < b.ended_at  # sync-parallel would hold a until b ends


@pytest.mark.parametrize("strategy", ["async", "sync", "sync-parallel"])
def test_the_stream_says_when_the_model_starts_waiting(strategy: str) -> None:
    """``waiting`` comes when the run starts to wait for results (before the results), with
    the calls it waits on; applications such as the Responses API end a response there."""
    script = ["[CALL] k [HEAD] sleepy(seconds=1.0) [END]\n", "[TRAP][END]", "Done."]
    events: list = []

    async def main():
        engine = SimEngine(ScriptedPolicy(script), SimCosts(tpot_s=0.01))
        session = Session(engine, [sleepy, add], strategy=strategy, system="t")
        return await session.run("go", on_event=events.append)

    run_virtual(main())
    kinds = [e.type for e in events]
    waiting = next(e for e in events if e.type == "waiting")
    assert waiting.pending == ("k",)
    assert kinds.index("waiting") < kinds.index("call.completed") < kinds.index("done")
