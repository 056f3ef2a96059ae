"""The simulator's measured latency equals the paper's analytic model (within 1%) on randomized
independent-call tasks, under matching assumptions: free prefill and injection, G = the call's
tokens × time per token, traps free (the model ignores them), and the answer (plus
end-of-sequence) as a known suffix."""

from __future__ import annotations

import random

import pytest

from asynclm.bench import latency
from asynclm.testing.sim import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask, SimTokenizer
from asynclm.testing.sim import task_toolbox
from asynclm.protocol import render_call
from asynclm.runtime import Session, run_virtual

TPOT = 0.005


def _random_task(rng: random.Random) -> SimTask:
    n = rng.randint(2, 7)
    calls = tuple(
        SimCall(f"f{i}", rng.choice(["search", "lookup", "fetch"]),
                {"query": " ".join(rng.choice("abcdefgh") * rng.randint(1, 4)
                                   for _ in range(rng.randint(1, 8)))},
                rng.uniform(0.03, 0.5))
        for i in range(n)
    )
    return SimTask(calls, answer="The answer is ready.")


def _measure(task: SimTask, strategy: str) -> float:
    engine = SimEngine(OraclePolicy(task), SimCosts(tpot_s=TPOT, free_traps=True))
    r = run_virtual(Session(engine, task_toolbox(task), strategy=strategy).run(task.prompt))
    assert all(c.status == "ok" for c in r.calls)
    return r.latency_s


@pytest.mark.parametrize("seed", range(25))
def test_simulator_matches_the_latency_model(seed):
    rng = random.Random(seed)
    task = _random_task(rng)
    tok = SimTokenizer()
    first = max(range(len(task.calls)), key=lambda i: task.calls[i].estimate)  # LPT's first
    G = [tok.count(("" if i == first else "\n") + render_call(c.fn, dict(c.args), c.id))
         * TPOT for i, c in enumerate(task.calls)]
    E = [c.duration_s for c in task.calls]
    suffix = (tok.count(task.answer) + 1) * TPOT  # the answer, then end-of-sequence
    expected = {
        "sync": latency.sync(G, E, suffix=suffix),
        "sync-parallel": latency.sync_parallel(G, E, suffix=suffix),
        "async": latency.async_lpt(G, E, suffix=suffix),
    }
    for strategy, want in expected.items():
        got = _measure(task, strategy)
        assert got == pytest.approx(want, rel=0.01), (strategy, got, want)
    assert expected["async"] <= expected["sync-parallel"] < expected["sync"]
