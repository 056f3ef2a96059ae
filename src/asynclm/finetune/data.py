"""``asynclm finetune data``: interrupt-aware training transcripts from BFCL, by simulation.

For every train item of :mod:`asynclm.finetune.split` (and every turn of a multi-turn item, up to
``max_turns``):

1. **Call DAG.** The ground-truth calls (first acceptable value of each argument). Single-turn
   calls are independent. Multi-turn calls on the same BFCL class form a chain (each waits for the
   previous one's result: the class is stateful and later arguments may come from earlier
   results); calls on different classes are independent.
2. **Times (seeded).** Each call runs ``uniform(1 ms, 1 s)``; the run decodes at
   ``uniform(5, 30) ms`` per token. The system prompt shows each function's estimated time: the
   mean of its calls' durations in the item (a fresh draw for functions not called), to 10 ms.
3. **Simulation.** The real :class:`~asynclm.runtime.Session` (strategy ``async``) runs over the
   simulator on virtual time, with an oracle that writes the ready call with the largest
   *shown* estimate first (ties: ground-truth order), traps when nothing is ready, and answers
   when every result is in. Tools sleep their durations and return a seeded fake result. Call ids
   are ``c1, c2, …`` in emission order (a first run finds the order; the recorded second run uses
   the renamed ids and is checked to be identical).
4. **User interrupts.** Extra examples join two train items: the second item's question arrives
   as ``[INTR] user [HEAD] … [END]`` at a uniform time between the first emitted call and the
   last injected result of the first item alone; the model then calls for both and answers both.

Output: one JSON object per line: ``messages`` (chat messages; assistant messages carry
``content`` and ``train`` — the ``[start, end)`` character spans the model wrote; interrupts and
user interrupts are not trainable), and ``sim`` (per assistant turn, the simulation it came
from: calls with times and dependencies, traps, latency), so every transcript can be checked
against its simulation (:func:`check_example`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from asynclm.bench.bfcl.data import BfclItem, ground_truth_calls, multi_turn_docs
from asynclm.bench.bfcl.timing import canonical_args
from asynclm.bench.bfcl.tools import toolbox_from_bfcl
from asynclm.engines.base import ChatMessage
from asynclm.finetune.sim import USER_ID, RecordingEngine, Stage, StagedOracle
from asynclm.finetune.split import POOL, make_split
from asynclm.protocol import (
    Call,
    Interrupt,
    MalformedCall,
    Parser,
    Trap,
    format_value,
    parse_body,
)
from asynclm.runtime import Session, SessionConfig, run_virtual
from asynclm.testing.sim import SimCall, SimCosts
from asynclm.tools import Toolbox

__all__ = [
    "EXEC_RANGE_S", "TPOT_RANGE_S", "DataConfig", "Example", "build_examples", "check_example",
    "write_jsonl",
]

EXEC_RANGE_S = (0.001, 1.0)
TPOT_RANGE_S = (0.005, 0.030)


@dataclass(frozen=True, slots=True)
class DataConfig:
    seed: int = 0
    fraction: float = 0.25
    categories: tuple[str, ...] = POOL
    max_turns: int = 2
    """Multi-turn items: the first ``max_turns`` turns (their tool lists are long)."""
    user_interrupts: int = 40
    limit: int | None = None
    """At most this many train items (for quick runs); None = all."""


@dataclass(frozen=True, slots=True)
class _Planned:
    fn: str
    args: dict[str, Any]
    deps: tuple[int, ...]  # indices into the same turn's list


Example = dict[str, Any]


# -- DAGs -------------------------------------------------------------------------------------------

def _class_of(item: BfclItem) -> dict[str, str]:
    out: dict[str, str] = {}
    for cls in item.extra.get("involved_classes", ()):
        for doc in multi_turn_docs(cls):
            out.setdefault(str(doc["name"]), cls)
    return out


def _bind(call: str, docs: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    body = parse_body(call)
    args = dict(body.args)
    if body.pos:
        names = list(docs[body.fn].get("parameters", {}).get("properties", {}))
        args.update({n: v for n, v in zip(names, body.pos, strict=False)})
    return body.fn, args


def plan_turns(item: BfclItem, max_turns: int) -> list[list[_Planned]]:
    """The call DAG of each turn (see the module docstring)."""
    if not item.multi_turn:
        return [[_Planned(fn, args, ()) for fn, args in ground_truth_calls(item)]]
    docs = {str(d["name"]): d for d in item.functions}
    cls = _class_of(item)
    turns = []
    for strings in list(item.ground_truth)[:max_turns]:
        last: dict[str, int] = {}
        planned = []
        for i, s in enumerate(strings):
            fn, args = _bind(s, docs)
            c = cls.get(fn, fn)
            planned.append(_Planned(fn, args, (last[c],) if c in last else ()))
            last[c] = i
        turns.append(planned)
    return turns


# -- one simulated turn -----------------------------------------------------------------------------

def _toolbox(functions: Sequence[Mapping[str, Any]], plan: dict[tuple[str, str], list[SimCall]],
             estimates: Mapping[str, float]) -> Toolbox:
    queues = {k: list(v) for k, v in plan.items()}

    async def handler(name: str, args: dict[str, Any]) -> Any:
        queue = queues[(name, canonical_args(args))]
        call = queue.pop(0) if len(queue) > 1 else queue[0]
        await asyncio.sleep(call.duration_s)
        return call.result

    box = toolbox_from_bfcl(list(functions), handler=handler)
    return Toolbox([t.replace(estimated_time=estimates.get(t.name)) for t in box.values()])


def _answer(calls: Sequence[SimCall]) -> str:
    if not calls:
        return "No function needs to be called for this."
    ordered = sorted(calls, key=lambda c: (len(c.id), c.id))
    parts = [f"{c.id} returned {format_value(c.result)}" for c in ordered]
    return "All results are in: " + "; ".join(parts) + "."


@dataclass
class _Turn:
    transcript: list[tuple[str, str]]
    sim: dict[str, Any]


def _simulate(
    functions: Sequence[Mapping[str, Any]], messages: list[ChatMessage], stages: list[Stage],
    estimates: Mapping[str, float], tpot_s: float, user: tuple[float, str] | None,
) -> _Turn:
    plan: dict[tuple[str, str], list[SimCall]] = {}
    probe = toolbox_from_bfcl(list(functions), handler=_never)
    for s in stages:
        for c in s.calls:
            plan.setdefault((c.fn, canonical_args(probe[c.fn].validate(dict(c.args)))), []).append(c)
    tools = _toolbox(functions, plan, estimates)
    engine = RecordingEngine(StagedOracle(stages), SimCosts(tpot_s=tpot_s), user_message=user)
    session = Session(engine, tools, strategy="async", config=SessionConfig(max_tokens=4096))
    msgs = _with_system(session.system, messages)
    result = run_virtual(session.run(msgs))
    if result.stop_reason != "eos" or any(c.status != "ok" for c in result.calls):
        raise RuntimeError(f"simulation did not end cleanly: {result.stop_reason}")
    if user is not None and engine.user_at is None:
        raise RuntimeError("the user interrupt was not delivered")
    by_id = {c.id: c for s in stages for c in s.calls}
    calls = [{
        "id": r.id, "fn": r.fn, "args": r.args, "deps": list(by_id[r.id].deps),
        "estimate_s": by_id[r.id].estimate, "duration_s": by_id[r.id].duration_s,
        "stage": next(i for i, s in enumerate(stages) if r.id in {c.id for c in s.calls}),
        "result": by_id[r.id].result,
        "emitted_at": r.emitted_at, "started_at": r.started_at, "ended_at": r.ended_at,
        "injected_at": r.injected_at,
    } for r in result.calls]
    return _Turn(engine.segments(), {
        "tpot_s": tpot_s, "latency_s": result.latency_s, "traps": result.counters["traps"],
        "rollbacks": result.counters["rollbacks"], "calls": calls,
        "user_at": engine.user_at, "system": msgs[0].content,
    })


async def _never(name: str, args: dict[str, Any]) -> Any:  # pragma: no cover - never run
    raise AssertionError


def _with_system(system: str, messages: list[ChatMessage]) -> list[ChatMessage]:
    extra = "\n\n".join(m.content for m in messages if m.role == "system")
    return [ChatMessage("system", system + (f"\n\n{extra}" if extra else ""))] + [
        m for m in messages if m.role != "system"]


def _stages(turn: list[_Planned], rng: random.Random, est: Mapping[str, float],
            start: int = 0) -> tuple[list[SimCall], list[float]]:
    durations = [rng.uniform(*EXEC_RANGE_S) for _ in turn]
    calls = [SimCall(f"t{start + i}", p.fn, p.args, d,
                     tuple(f"t{start + j}" for j in p.deps), est.get(p.fn),
                     {"status": "ok", "value": rng.randint(1, 999)})
             for i, (p, d) in enumerate(zip(turn, durations, strict=True))]
    return calls, durations


def _estimates(functions: Sequence[Mapping[str, Any]], durations: Mapping[str, list[float]],
               rng: random.Random) -> dict[str, float]:
    out = {}
    for doc in functions:
        fn = str(doc["name"])
        ds = durations.get(fn) or [rng.uniform(*EXEC_RANGE_S)]
        out[fn] = max(0.01, round(sum(ds) / len(ds), 2))
    return out


def _rename(stages: list[Stage], order: list[str]) -> list[Stage]:
    """Ids ``c1, c2, …`` in emission order (deps and answers follow)."""
    new = {old: f"c{i + 1}" for i, old in enumerate(order)}

    def ren(c: SimCall) -> SimCall:
        return SimCall(new[c.id], c.fn, c.args, c.duration_s, tuple(new[d] for d in c.deps),
                       c.estimate_s, c.result)

    out = []
    for s in stages:
        calls = tuple(ren(c) for c in s.calls)
        out.append(Stage(calls, _answer(calls)))
    return out


def _run_renamed(functions: Sequence[Mapping[str, Any]], messages: list[ChatMessage],
                 stages: list[Stage], est: Mapping[str, float], tpot: float,
                 user: tuple[float, str] | None) -> _Turn:
    first = _simulate(functions, messages, stages, est, tpot, user)
    order = [c["id"] for c in first.sim["calls"]]
    renamed = _rename(stages, order)
    turn = _simulate(functions, messages, renamed, est, tpot, user)
    if [c["id"] for c in turn.sim["calls"]] != [f"c{i + 1}" for i in range(len(order))]:
        raise RuntimeError("renaming the ids changed the schedule")
    return turn


# -- examples ---------------------------------------------------------------------------------------

def _assistant(turn: _Turn) -> dict[str, Any]:
    content, spans = "", []
    for label, text in turn.transcript:
        if label == "model":
            spans.append([len(content), len(content) + len(text)])
        content += text
    return {"role": "assistant", "content": content, "train": spans}


def item_example(item: BfclItem, cfg: DataConfig) -> Example:
    """One example (all simulated turns) for one BFCL item."""
    rng = random.Random(f"{cfg.seed}:{item.id}")
    turns = plan_turns(item, cfg.max_turns)
    drawn: list[tuple[list[SimCall], float]] = []
    for k, turn in enumerate(turns):
        calls, _ = _stages(turn, rng, {}, start=100 * k)
        drawn.append((calls, rng.uniform(*TPOT_RANGE_S)))
    per_fn: dict[str, list[float]] = {}
    for calls, _ in drawn:
        for c in calls:
            per_fn.setdefault(c.fn, []).append(c.duration_s)
    est = _estimates(item.functions, per_fn, rng)
    messages: list[dict[str, Any]] = []
    sims = []
    history: list[ChatMessage] = []
    for k, (calls, tpot) in enumerate(drawn):
        calls = [SimCall(c.id, c.fn, c.args, c.duration_s, c.deps, est[c.fn], c.result)
                 for c in calls]
        history += [ChatMessage(m["role"], m["content"]) for m in item.turns[k]]
        ran = _run_renamed(item.functions, history, [Stage(tuple(calls), _answer(calls))], est,
                           tpot, None)
        if not messages:
            messages.append({"role": "system", "content": ran.sim.pop("system")})
        else:
            ran.sim.pop("system")
        messages += [dict(m) for m in item.turns[k] if m.get("role") != "system"]
        a = _assistant(ran)
        messages.append(a)
        history.append(ChatMessage("assistant", a["content"]))
        sims.append(ran.sim)
    return {"id": item.id, "kind": "multi_turn" if item.multi_turn else "single",
            "sources": [item.id], "seed": cfg.seed, "messages": messages, "sim": sims}


def user_interrupt_example(a: BfclItem, b: BfclItem, cfg: DataConfig) -> Example:
    """Item ``a``'s question, then ``b``'s arriving as a user interrupt while ``a`` runs."""
    rng = random.Random(f"{cfg.seed}:user:{a.id}:{b.id}")
    ca, _ = _stages(plan_turns(a, 1)[0], rng, {}, start=0)
    cb, _ = _stages(plan_turns(b, 1)[0], rng, {}, start=100)
    functions = list(a.functions) + [f for f in b.functions
                                      if f["name"] not in {g["name"] for g in a.functions}]
    per_fn: dict[str, list[float]] = {}
    for c in ca + cb:
        per_fn.setdefault(c.fn, []).append(c.duration_s)
    est = _estimates(functions, per_fn, rng)
    ca = [SimCall(c.id, c.fn, c.args, c.duration_s, c.deps, est[c.fn], c.result) for c in ca]
    cb = [SimCall(c.id, c.fn, c.args, c.duration_s, c.deps, est[c.fn], c.result) for c in cb]
    tpot = rng.uniform(*TPOT_RANGE_S)
    msgs = [ChatMessage(m["role"], m["content"]) for m in a.turns[0]]
    alone = _simulate(a.functions, msgs, [Stage(tuple(ca), _answer(ca))], est, tpot, None)
    first = min(c["emitted_at"] for c in alone.sim["calls"])
    last = max(c["injected_at"] for c in alone.sim["calls"])
    at = rng.uniform(first, last)
    stages = [Stage(tuple(ca), _answer(ca)), Stage(tuple(cb), _answer(cb))]
    turn = _run_renamed(functions, msgs, stages, est, tpot, (at, b.question))
    system = turn.sim.pop("system")
    return {"id": f"{a.id}+{b.id}", "kind": "user_interrupt", "sources": [a.id, b.id],
            "seed": cfg.seed,
            "messages": [{"role": "system", "content": system}]
            + [dict(m) for m in a.turns[0] if m.get("role") != "system"] + [_assistant(turn)],
            "sim": [turn.sim]}


def build_examples(cfg: DataConfig) -> Iterator[Example | tuple[str, str]]:
    """Examples for the train split; an item that cannot be simulated cleanly (its ground truth
    does not validate against its own schema) yields ``(item id, reason)`` instead."""
    split = make_split(cfg.seed, cfg.fraction)
    items = split.items("train", cfg.categories)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    ok: list[BfclItem] = []
    for item in items:
        try:
            ex = item_example(item, cfg)
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            yield (item.id, f"{type(exc).__name__}: {exc}")
            continue
        ok.append(item)
        yield ex
    single = [it for it in ok if not it.multi_turn and ground_truth_calls(it)]
    rng = random.Random(f"{cfg.seed}:user-pairs")
    for _ in range(cfg.user_interrupts if len(single) >= 2 else 0):
        a, b = rng.sample(single, 2)
        try:
            yield user_interrupt_example(a, b, cfg)
        except Exception as exc:  # noqa: BLE001
            yield (f"{a.id}+{b.id}", f"{type(exc).__name__}: {exc}")


def write_jsonl(cfg: DataConfig, path: Path) -> dict[str, Any]:
    """Write the examples; returns a summary (counts by kind, skipped items, config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    with path.open("w", encoding="utf-8") as f:
        for ex in build_examples(cfg):
            if isinstance(ex, tuple):
                skipped.append(ex)
                continue
            kinds[ex["kind"]] = kinds.get(ex["kind"], 0) + 1
            f.write(json.dumps(ex, ensure_ascii=False, default=str) + "\n")
    return {"path": str(path), "examples": kinds, "skipped": skipped, "config": asdict(cfg)}


# -- checking a transcript against its simulation ---------------------------------------------------

def check_example(ex: Example) -> list[str]:
    """Problems found when the assistant transcripts are parsed (transcript mode) and compared
    with their simulation; empty when consistent. Checks: every block parses; the calls are the
    simulated ones in emission order (id, function, arguments); the interrupts are the simulated
    ones in injection order, each after its call; a call comes after the results of its
    dependencies; each call is the ready call with the largest estimate; every trap is followed
    by an interrupt; the trainable spans are exactly the model's text (no interrupt in them)."""
    problems: list[str] = []
    assistants = [m for m in ex["messages"] if m["role"] == "assistant"]
    if len(assistants) != len(ex["sim"]):
        return ["one simulation per assistant message expected"]
    for k, (msg, sim) in enumerate(zip(assistants, ex["sim"], strict=True)):
        problems += [f"turn {k}: {p}" for p in _check_turn(msg, sim)]
    return problems


def _check_turn(msg: Mapping[str, Any], sim: Mapping[str, Any]) -> list[str]:
    text: str = msg["content"]
    parser = Parser(transcript=True)
    events = parser.feed(text) + parser.close()
    out: list[str] = []
    calls = [e for e in events if isinstance(e, Call)]
    intrs = [e for e in events if isinstance(e, Interrupt)]
    if any(isinstance(e, MalformedCall) for e in events):
        out.append("malformed call block")
    simc = sim["calls"]
    if [(c.id, c.fn) for c in calls] != [(c["id"], c["fn"]) for c in simc]:
        out.append("calls differ from the simulation")
    else:
        for c, s in zip(calls, simc, strict=True):
            if json.dumps(c.args, sort_keys=True, default=str) != json.dumps(
                    s["args"], sort_keys=True, default=str):
                out.append(f"{c.id}: arguments differ")
    call_ids = [i.id for i in intrs if i.id != USER_ID]
    # an interrupt without an id (None) is not filtered out: the ids are compared as they are
    if sorted(cast("list[str]", call_ids)) != sorted(c["id"] for c in simc):
        out.append("interrupts differ from the simulated calls")
    else:
        at = {c["id"]: c["injected_at"] for c in simc}
        times = [at[i] for i in call_ids]
        if times != sorted(times):
            out.append("interrupts not in the order the simulation injected them")
        results = {c["id"]: format_value(c["result"]) for c in simc}
        if any(i.payload.strip() != results[i.id] for i in intrs if i.id != USER_ID):
            out.append("an interrupt's payload is not its call's simulated result")
    pos = {c.id: c.start for c in calls}
    ipos = {i.id: i.start for i in intrs}
    for c in simc:
        if c["id"] in pos and c["id"] in ipos and ipos[c["id"]] < pos[c["id"]]:
            out.append(f"{c['id']}: result before the call")
        for d in c["deps"]:
            if d not in ipos or c["id"] not in pos or ipos[d] > pos[c["id"]]:
                out.append(f"{c['id']}: written before the result of {d}")
        if not (c["ended_at"] <= c["injected_at"] + 1e-9):
            out.append(f"{c['id']}: injected before it ended")
    # longest-first among the ready calls, at each call's position
    user_pos = ipos.get(USER_ID, len(text) + 1)
    trained = _mask(len(text), msg["train"])
    for c in calls:
        s = next(x for x in simc if x["id"] == c.id)
        point = _decision_point(text, trained, c.start)
        released = [x for x in simc if x["stage"] == 0 or user_pos < point]
        ready = [x for x in released if pos.get(x["id"], -1) >= c.start
                 and all(ipos.get(d, len(text) + 1) < point for d in x["deps"])]
        if ready and s["estimate_s"] < max(x["estimate_s"] for x in ready):
            out.append(f"{c.id}: not the longest ready call")
    traps = [e for e in events if isinstance(e, Trap)]
    if len(traps) != sim["traps"]:
        out.append(f"{len(traps)} traps in the text, {sim['traps']} in the simulation")
    for t in traps:
        nxt = next((e for e in events if not isinstance(e, Trap) and e.start >= t.end
                    and isinstance(e, (Call, Interrupt))), None)
        if not isinstance(nxt, Interrupt):
            out.append("a trap not followed by an interrupt")
    trained_text = "".join(text[a:b] for a, b in msg["train"])
    if "[INTR]" in trained_text:
        out.append("an interrupt inside a trainable span")
    untrained = _complement(text, msg["train"])
    if any(p.strip() and not p.lstrip().startswith("[INTR]") for p in untrained):
        out.append("untrained text that is not an interrupt")
    return out


def _mask(n: int, spans: Sequence[Sequence[int]]) -> list[bool]:
    out = [False] * n
    for a, b in spans:
        out[a:b] = [True] * (b - a)
    return out


def _decision_point(text: str, trained: Sequence[bool], start: int) -> int:
    """Where the oracle chose the call that starts at ``start``: before the newline it wrote
    ahead of it (interrupts injected after that newline were not yet visible)."""
    q = start
    while q > 0 and not trained[q - 1]:
        q -= 1
    if q > 0 and text[q - 1] == "\n":
        return q - 1
    return start


def _complement(text: str, spans: Sequence[Sequence[int]]) -> list[str]:
    out, at = [], 0
    for a, b in spans:
        if a > at:
            out.append(text[at:a])
        at = b
    if at < len(text):
        out.append(text[at:])
    return out
