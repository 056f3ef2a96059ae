"""Multi-turn BFCL items (and the joined ``multi-step-parallel`` set) through the runtime.

One run = one conversation: each turn is one :class:`~asynclm.runtime.Session` run over the
accumulated conversation (system prompt, earlier turns with the model's transcript as the
assistant message, then the turn's user message), on tools backed by BFCL's real class
instances (:class:`.multi_turn.Backend`; one set of instances per run, kept across turns).

On the simulator each turn's model is the oracle of that turn's ground truth. A call on a tool
instance depends on the previous call on the same instance in that turn:
- ``write_ahead=False`` (the paper's multi-step model): the oracle writes it only after the
  previous call's result is in;
- ``write_ahead=True`` (asynclm, cheat sheet): the oracle writes it right after the previous
  call was *written*; the executor's ``Ordered`` keys keep the instance's calls in emission
  order while calls on other instances overlap.

Validity: BFCL's ``multi_turn_checker`` on the calls as they took effect, and (recorded as
``live_state_ok``) BFCL's ``state_checker`` between the live instances and the ground truth's
after every turn. Latency, lower bound and breakdown are sums over turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from asynclm.bench.bfcl.bound import lower_bound
from asynclm.bench.bfcl.config import SIM_ANSWER, BenchConfig, make_session
from asynclm.bench.bfcl.data import BfclItem
from asynclm.bench.bfcl.multi_turn import Backend, estimates
from asynclm.bench.bfcl.records import bound_args, jsonable, malformed
from asynclm.bench.bfcl.timing import CallTimer
from asynclm.engines.base import ChatMessage, Engine
from asynclm.protocol import format_call
from asynclm.runtime import CallRecord, SessionResult, run_virtual
from asynclm.testing.sim import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask
from asynclm.tools import Toolbox

__all__ = ["llama_conversation", "sim_conversation"]

EngineFor = Callable[[int, Toolbox], Engine]
SIM_SYSTEM = "Simulated model: the oracle reads no prompt; tools as listed by the benchmark."
"""The simulator's system prompt. Its prefill costs the same whatever it says (TTFT only), and
rendering and tokenizing every tool document each turn would only slow the benchmark down."""


def _oracle_engine(item: BfclItem, backend: Backend, turn: int, tools: Toolbox,
                   truth_timer: CallTimer, cfg: BenchConfig) -> Engine:
    """The simulator for one turn: an oracle making the turn's ground-truth calls."""
    calls: list[SimCall] = []
    last: dict[Any, str] = {}
    for j, c in enumerate(backend.gt_calls(turn)):
        try:
            vargs = tools[c.tool].validate(c.args)
        except Exception:  # noqa: BLE001 - the call fails in the run too
            vargs = dict(c.args)
        cid = f"c{j + 1}"
        key = backend.order_key(c.tool)
        deps = (last[key],) if key in last else ()
        last[key] = cid
        calls.append(SimCall(cid, c.tool, dict(c.args), truth_timer.next(c.tool, vargs), deps))
    task = SimTask(tuple(calls), prompt="", answer=SIM_ANSWER, name=f"{item.id}/{turn}")
    policy = OraclePolicy(task, futures=cfg.write_ahead)
    return SimEngine(policy, SimCosts(tpot_s=cfg.tpot_ms / 1000, ttft_s=cfg.ttft_ms / 1000))


def _cheat_sheet(backend: Backend, turn: int) -> str:
    calls = backend.gt_calls(turn)
    if not calls:
        return "\n\nCheat sheet: no function needs to be called."
    return "\n\nCheat sheet (make exactly these calls):\n" + "\n".join(
        format_call(c.tool, dict(c.args)) for c in calls)


def _sum_breakdowns(bs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {k: sum(b[k] for b in bs) for k in bs[0]} if bs else {}


def _backend(item: BfclItem, cfg: BenchConfig) -> Backend:
    return Backend(item, CallTimer(cfg.seed, item.id, cfg.profile), ordered=cfg.ordered)


async def _conversation(item: BfclItem, strategy: str, cfg: BenchConfig, backend: Backend,
                        engine_for: EngineFor, *, warm: bool) -> dict[str, Any]:
    est = estimates(item, cfg.seed, cfg.profile)
    history: list[ChatMessage] = []
    turns: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    live_ok, live_error = True, None
    t_offset = 0.0
    first_token: float | None = None
    for k, turn_msgs in enumerate(item.turns):
        backend.turn = k
        tools = backend.tools(k, est)
        engine = engine_for(k, tools)
        session = make_session(engine, tools, strategy, cfg, item,
                           system=SIM_SYSTEM if cfg.engine == "sim" else None)
        user = [ChatMessage(m["role"], m["content"]) for m in turn_msgs]
        if cfg.cheat_sheet and user:
            user[-1] = ChatMessage(user[-1].role, user[-1].content + _cheat_sheet(backend, k))
        msgs = [session.system_message(), *history, *user]
        if warm:
            await session.warm_up(msgs)  # same cache state for every strategy
        result: SessionResult = await session.run(msgs)
        keyed = cfg.ordered or not cfg.write_ahead

        def order_key(c: CallRecord) -> Any:  # used at once, in this iteration
            return backend.order_key(c.fn) if keyed and c.fn in backend.route else None  # noqa: B023

        lb = lower_bound(result, lambda s: len(engine.tokenize(s, special=True)),  # noqa: B023
                         order_key=order_key, futures=cfg.write_ahead or None)
        backend.advance_truth(k)
        ok, err = backend.state_matches()
        if not ok and live_ok:
            live_ok, live_error = False, f"turn {k}: {err}"
        t0 = result.trace.start or 0.0
        if first_token is None and result.first_token_s is not None:
            first_token = t_offset + result.first_token_s
        for c in result.calls:
            calls.append({
                "turn": k, "id": c.id, "fn": c.fn, "args": jsonable(bound_args(c, tools)),
                "status": c.status, "error_type": c.error_type,
                "error": (c.error or "")[:200] or None,
                "instance": (None if c.fn not in backend.route
                             else "".join(map(str, cast("Iterable[Any]",
                                                        backend.order_key(c.fn))))),
                "emitted_s": t_offset + c.emitted_at - t0, "exec_s": c.duration_s,
                "started_s": None if c.started_at is None else t_offset + c.started_at - t0,
                "ended_s": t_offset + c.ended_at - t0,
                "injected_s": None if c.injected_at is None else t_offset + c.injected_at - t0,
                "malformed": malformed(c)})
        turns.append({"latency_s": result.latency_s, "first_token_s": result.first_token_s,
                      "breakdown": result.trace.breakdown().as_dict(), **lb,
                      "n_calls": len(result.calls), "n_generated": result.n_generated,
                      "stop_reason": result.stop_reason, "state_ok": ok,
                      "transcript": result.transcript})
        t_offset += result.latency_s
        history += [*user, ChatMessage("assistant", result.transcript)]
    valid, error = backend.check()
    lat = sum(t["latency_s"] for t in turns)
    sums = {k: sum(t[k] for t in turns) for k in ("lb_s", "lb_ingest_s", "ingest_s", "prefill_s",
                                                   "decode_s", "answer_s", "sum_G_s",
                                                   "trap_decode_s")}
    stops = [t["stop_reason"] for t in turns if t["stop_reason"] != "eos"]
    return {
        "latency_s": lat,
        "first_token_s": first_token,
        "breakdown": _sum_breakdowns([t["breakdown"] for t in turns]),
        "n_calls": len(calls),
        "n_well_formed": sum(1 for c in calls if not c["malformed"]),
        "n_error": sum(1 for c in calls if c["status"] == "error"),
        "calls": calls,
        "valid": valid,
        "check_error": error,
        "live_state_ok": live_ok,
        "live_state_error": live_error,
        **sums,
        "max_G_plus_E_s": max((t["max_G_plus_E_s"] for t in turns), default=0.0),
        "efficiency": sums["lb_s"] / lat if lat > 0 else None,
        "efficiency_ingest": sums["lb_ingest_s"] / lat if lat > 0 else None,
        "n_generated": sum(t["n_generated"] for t in turns),
        "n_injected": sum(1 for c in calls if c["injected_s"] is not None),
        "stop_reason": stops[0] if stops else "eos",
        "counters": {k: sum(t.get("counters", {}).get(k, 0) for t in turns)
                     for k in dict.fromkeys(k for t in turns for k in t.get("counters", {}))},
        "n_turns": len(turns),
        "turns": turns,
    }


def sim_conversation(item: BfclItem, strategy: str, cfg: BenchConfig) -> dict[str, Any]:
    """One multi-turn run on the simulator (virtual time)."""
    truth_timer = CallTimer(cfg.seed, item.id, cfg.profile)  # the oracle knows the durations
    backend = _backend(item, cfg)

    def engine_for(turn: int, tools: Toolbox) -> Engine:
        return _oracle_engine(item, backend, turn, tools, truth_timer, cfg)

    return run_virtual(_conversation(item, strategy, cfg, backend, engine_for, warm=False))


async def llama_conversation(engine: Engine, item: BfclItem, strategy: str,
                             cfg: BenchConfig) -> dict[str, Any]:
    """One multi-turn run on a loaded real engine; every turn's prompt is prefilled (unmeasured)
    before the turn, so every strategy starts each turn from the same cache state."""
    return await _conversation(item, strategy, cfg, _backend(item, cfg),
                               lambda _k, _t: engine, warm=True)
