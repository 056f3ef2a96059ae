"""Agent-to-agent interrupts: send_message delivers into the other live session."""

from __future__ import annotations

import pytest

from asynclm.agents import AgentDirectory
from asynclm.agents_demo import PLANNER, RESEARCHER, report, run_sim_agents
from asynclm.runtime import RunControl


def test_two_sim_agents_cooperate_through_interrupts() -> None:
    results = run_sim_agents()
    planner, researcher = results[PLANNER], results[RESEARCHER]
    assert planner.stop_reason == researcher.stop_reason == "eos"
    # the researcher got the planner's request as an interrupt, then ran its tools
    assert "[INTR] planner [HEAD] message from planner: Please find" in researcher.transcript
    assert {c.fn for c in researcher.calls} == {"get_weather", "search_flights", "send_message"}
    assert all(c.ok for c in researcher.calls)
    # the planner's answer uses the weather the researcher's tool really returned
    weather = researcher.call("w1").value
    assert f'"high_c": {weather["high_c"]}' in planner.text
    assert "messages received from: researcher" in report(results)


def test_deliver_errors_are_lookup_or_value_errors() -> None:
    d = AgentDirectory()
    ctl = RunControl()
    d.register("bob", ctl)
    with pytest.raises(ValueError):
        d.register("bob", RunControl())
    with pytest.raises(ValueError):
        d.register("bad name", RunControl())
    with pytest.raises(LookupError, match="live agents: bob"):
        d.deliver("alice", "carol", "hi")
    with pytest.raises(ValueError):
        d.deliver("bob", "bob", "hi")
    assert d.deliver("alice", "bob", "hi") == "delivered to bob"
    ctl._detach()
    with pytest.raises(LookupError, match="finished"):
        d.deliver("alice", "bob", "again")
    d.unregister("bob", RunControl())  # not its control: stays
    assert "bob" in d
    d.unregister("bob", ctl)
    assert "bob" not in d


def test_an_agent_stops_waiting_when_its_peers_have_ended() -> None:
    """The researcher never answers: the planner's wait ends when the researcher ends, not at
    the deadline."""
    from asynclm.agents_demo import AgentScript, Wait, agent_sessions, run_agents
    from asynclm.testing.sim import SimCosts, SimEngine
    from asynclm.runtime import SessionConfig, run_virtual

    d = AgentDirectory()
    engines = {
        PLANNER: SimEngine(AgentScript([Wait(RESEARCHER), "gave up"]), SimCosts(tpot_s=0.01)),
        RESEARCHER: SimEngine(AgentScript(["I am busy."]), SimCosts(tpot_s=0.01)),
    }
    sessions = agent_sessions(engines, d, config=SessionConfig(max_tokens=64, deadline_s=500))
    results = run_virtual(run_agents(sessions, d))
    # it no longer waits: its scripted traps end as empty ones (without the release: deadline)
    assert results[PLANNER].stop_reason == "trap_limit"
    assert results[PLANNER].latency_s < 5
