"""The BFCL latency/accuracy benchmark: every item under every strategy, on one engine.

For each item and strategy the runner builds the item's tools (``Toolbox.from_bfcl``) with a
handler that sleeps the call's seeded duration (:mod:`.timing`; virtual time on the simulator)
and returns a short fake result, runs one :class:`~asynclm.runtime.Session`, and records latency,
time to first token, the trace's breakdown, the calls, BFCL validity (:mod:`.checker`) and the
run's own lower bound.

Engines:
- ``sim``: the simulator on virtual time. The model is the oracle of the item's ground truth
  (cheat-sheet semantics: one call per expected call, with the first acceptable value of each
  argument, longest call first); ``tpot_ms``/``ttft_ms`` are its costs.
- ``llamacpp``: one in-process model for the whole run, loaded once and warmed up once. Before
  *every* measured run the run's exact prompt is prefilled (unmeasured), so every strategy starts
  from the same cache state — the whole prompt cached but its last token — whatever ran before;
  the order of strategies also rotates from item to item. ``bfcl-prompt`` runs in a pass of its
  own before the CML strategies, so that each prompt format's instructions stay cached.

Strategy ``bfcl-prompt`` is BFCL's own synchronous reference: BFCL's system prompt, one plain
generation (no runtime, no tools run), the answer parsed as a Python list of calls
(:mod:`.bfcl_prompt`) and scored by the same checker. Its latency has no tool time in it.

Dialects (``BenchConfig.dialects``, ``--dialect hermes,pythonic,cml``; ``--framing turn,inline``
for the native ones): every runtime strategy runs in every dialect variant, keyed
``<variant>/<strategy>`` (``hermes/async``, ``hermes-inline/async``), ``bfcl-prompt`` once beside
them; each variant is a pass of its own over the items (its instructions stay cached). The
report then adds accuracy beside latency per run, failure modes (:func:`.records.failure_mode`),
forged results, tokens per interrupt, and paired outcomes per category (async against sync of
the same variant, variants against each other, :func:`.summary.paired`). On the simulator the
oracle writes in the run's dialect (and tells its results apart without call ids, by their
echo). CML alone keeps the plain strategy keys.

The run's own lower bound: :mod:`.bound`; summaries over items: :mod:`.summary`.

Multi-turn categories (``multi_turn_*``) and the joined ``multi-step-parallel`` set run in
:mod:`.run_multi`: one session per turn over the accumulated conversation, tools backed by the
real BFCL classes (:mod:`.multi_turn`; methods called directly, one instance per class per run,
``order_by=Ordered((sample, class))`` so calls on one instance keep emission order), validity
from BFCL's ``multi_turn_checker`` on the calls as they took effect. Their records hold the sums
over turns and one entry per turn. Their lower bound keeps calls on one instance in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from asynclm.bench.bfcl.bfcl_prompt import BFCL_PROMPT, bfcl_messages, format_answer
from asynclm.bench.bfcl.config import (
    DEFAULT_STRATEGIES,
    SIM_ANSWER,
    BenchConfig,
    Run,
    default_config,
    make_session,
)
from asynclm.bench.bfcl.data import BfclItem, ground_truth_calls, load
from asynclm.bench.bfcl.records import MALFORMED_ERRORS, bfcl_record, session_record
from asynclm.bench.bfcl.run_multi import llama_conversation, sim_conversation
from asynclm.bench.bfcl.summary import summarize
from asynclm.bench.bfcl.timing import CallTimer, call_duration, canonical_args, get_profile
from asynclm.bench.bfcl.tools import toolbox_from_bfcl
from asynclm.engines.base import ChatMessage, Engine
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.protocol import format_call
from asynclm.runtime import Session, run_virtual
from asynclm.runtime.clock import loop_clock
from asynclm.testing.sim import OraclePolicy, ScriptedPolicy, SimCall, SimCosts, SimEngine, SimTask
from asynclm.tools import Toolbox
from asynclm.trace import Trace

__all__ = [
    "BFCL_PROMPT", "DEFAULT_STRATEGIES", "MALFORMED_ERRORS", "BenchConfig", "default_config",
    "run_bfcl", "session_messages",
]


# -- prompts and tools -----------------------------------------------------------------------------


def _fake_result(fn: str) -> dict[str, str]:
    return {"status": "ok", "result": f"{fn} result"}


def _estimates(item: BfclItem, cfg: BenchConfig) -> dict[str, float]:
    """The ``estimated_time_s`` shown for each function: the true duration of its first
    ground-truth call (else a draw for the function alone), to 10 ms."""
    out: dict[str, float] = {}
    gt = ground_truth_calls(item)
    for doc in item.functions:
        fn = str(doc["name"])
        args = next((a for f, a in gt if f == fn), {})
        out[fn] = round(call_duration(cfg.seed, item.id, fn, args, 0, cfg.profile), 2)
    return out


def build_tools(item: BfclItem, cfg: BenchConfig, timer: CallTimer | None = None) -> Toolbox:
    """The item's tools; each call sleeps its seeded duration and returns a short fake result."""
    timer = timer or CallTimer(cfg.seed, item.id, cfg.profile)

    async def handler(name: str, args: dict[str, Any]) -> Any:
        await asyncio.sleep(timer.next(name, args))
        return _fake_result(name)

    box = toolbox_from_bfcl(item.functions, handler=handler)
    est = _estimates(item, cfg)
    return Toolbox([t.replace(estimated_time=est.get(t.name)) for t in box.values()])


def cheat_sheet(item: BfclItem) -> str:
    calls = ground_truth_calls(item)
    if not calls:
        return "\n\nCheat sheet: no function needs to be called."
    lines = "\n".join(format_call(fn, args) for fn, args in calls)
    return f"\n\nCheat sheet (make exactly these calls):\n{lines}"


def _turn(item: BfclItem, cfg: BenchConfig) -> list[dict[str, str]]:
    msgs = [dict(m) for m in item.turns[0]]
    if cfg.cheat_sheet:
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=None)
        if last is not None:
            msgs[last]["content"] = msgs[last]["content"] + cheat_sheet(item)
    return msgs


def session_messages(item: BfclItem, session: Session, cfg: BenchConfig) -> list[ChatMessage]:
    """The session's system prompt in its dialect (an item's own system message appended to
    it, untrusted; the dialect's markup stays trusted), then the item's other first-turn
    messages."""
    msgs = _turn(item, cfg)
    extra = "\n\n".join(m["content"] for m in msgs if m.get("role") == "system")
    return [session.system_message(extra)] + [
        ChatMessage(m["role"], m["content"]) for m in msgs if m.get("role") != "system"]


cml_messages = session_messages
"""The former name of :func:`session_messages` (CML was the only dialect)."""


def bfcl_chat(item: BfclItem, cfg: BenchConfig) -> list[ChatMessage]:
    return [ChatMessage(m["role"], m["content"])
            for m in bfcl_messages(item.functions, _turn(item, cfg))]


# -- one run -------------------------------------------------------------------------------------


async def generate(
    engine: Engine, messages: Sequence[ChatMessage], max_tokens: int
) -> tuple[str, Trace, float, float | None, int, str]:
    """One plain generation: ``(text, trace, latency_s, first_token_s, n_generated, stop)``."""
    now = loop_clock(asyncio.get_running_loop())
    trace = Trace(meta={"strategy": BFCL_PROMPT})
    t0 = now()
    tokens = engine.tokenize_chat(messages)
    cached = await engine.prefill(tokens)
    t = now()
    trace.add_span("prefill", "prefill", t0, t, tokens=len(tokens), cached=cached)
    out: list[int] = []
    first = None
    stop = "max_tokens"
    n = 0
    while n < max_tokens:
        tok = await engine.step()
        t1 = now()
        n += 1
        trace.add_span("decode", "decode", t, t1, tokens=1)
        t = t1
        if first is None:
            first = t1 - t0
        if engine.is_eos(tok):
            stop = "eos"
            break
        out.append(tok)
    trace.set_bounds(t0, t)
    return engine.detokenize(out).decode("utf-8", "replace"), trace, t - t0, first, n, stop


# -- engines -------------------------------------------------------------------------------------


def _sim_run(item: BfclItem, run: Run, cfg: BenchConfig) -> dict[str, Any]:
    strategy = run.strategy
    if item.multi_turn:
        return sim_conversation(item, strategy, cfg)
    costs = SimCosts(tpot_s=cfg.tpot_ms / 1000, ttft_s=cfg.ttft_ms / 1000)
    tools = build_tools(item, cfg)
    gt = ground_truth_calls(item)
    if run.variant is None:
        engine = SimEngine(ScriptedPolicy([format_answer(gt)]), costs)
        out = run_virtual(generate(engine, bfcl_chat(item, cfg), cfg.max_tokens))
        return bfcl_record(item, tools, *out)
    # the oracle knows each call's true duration (same key as the tool handler: validated args)
    seen: dict[tuple[str, str], int] = {}
    calls = []
    for i, (fn, args) in enumerate(gt):
        try:
            vargs = tools[fn].validate(args)
        except Exception:  # noqa: BLE001 - the call will fail in the run too
            vargs = args
        key = (fn, canonical_args(vargs))
        k = seen[key] = seen.get(key, -1) + 1
        calls.append(SimCall(f"c{i + 1}", fn, args,
                             call_duration(cfg.seed, item.id, fn, vargs, k, cfg.profile)))
    task = SimTask(tuple(calls), prompt=item.question, answer=SIM_ANSWER, name=item.id)
    dialect = run.variant.build(None)  # the simulator has no chat template
    engine = SimEngine(OraclePolicy(task, dialect=dialect), costs, dialect=dialect)
    session = make_session(engine, tools, strategy, cfg, item, dialect=dialect)
    result = run_virtual(session.run(session_messages(item, session, cfg)))
    return session_record(item, result, tools,
                          lambda s: len(engine.tokenize(s, special=True)))


async def _llama_warmup(engine: Engine) -> None:
    await engine.prefill(engine.tokenize_chat([ChatMessage("user", "Say OK.")]))
    for _ in range(4):
        await engine.step()


async def _llama_run(engine: Engine, item: BfclItem, run: Run,
                     cfg: BenchConfig) -> dict[str, Any]:
    strategy = run.strategy
    if item.multi_turn:
        return await llama_conversation(engine, item, strategy, cfg)
    tools = build_tools(item, cfg)
    if run.variant is None:
        messages = bfcl_chat(item, cfg)
        await engine.prefill(engine.tokenize_chat(messages))  # warm: same state for every run
        out = await generate(engine, messages, cfg.max_tokens)
        return bfcl_record(item, tools, *out)
    session = make_session(engine, tools, strategy, cfg, item,
                           dialect=run.variant.build(engine))
    messages = session_messages(item, session, cfg)
    await session.warm_up(messages)  # same cache state for every run
    result = await session.run(messages)
    return session_record(item, result, tools,
                          lambda s: len(engine.tokenize(s, special=True)))


def _prompt_groups(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by prompt format (BFCL's own, then each dialect variant), each group run as
    one pass over the items: consecutive runs then share their format's instructions in the KV
    cache, which spares re-processing them for every item (not measured either way)."""
    groups: dict[str, list[Run]] = {"": []}  # BFCL's own prompt first
    for r in runs:
        groups.setdefault("" if r.variant is None else r.variant.label, []).append(r)
    return [g for g in groups.values() if g]


def _error_record(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"[:500], "valid": False, "latency_s": None,
            "n_calls": 0, "n_well_formed": 0, "n_error": 0}


# -- the benchmark -------------------------------------------------------------------------------


def run_bfcl(
    cfg: BenchConfig, *, progress: Callable[[str], None] | None = None,
    engine: Engine | None = None, checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready result (``items`` holds every run's record,
    ``strategies`` the summaries). ``engine``: an already loaded engine for ``llamacpp``.
    ``checkpoint`` (real engines) gets the result so far, marked ``partial``, after every item:
    a long run that is stopped keeps what it measured."""
    cfg.validate()
    items = [it for c in cfg.categories for it in load(c, limit=cfg.limit, offset=cfg.offset)]
    say = progress or (lambda _msg: None)
    records: dict[str, dict[str, dict[str, Any]]] = {it.id: {} for it in items}
    env: dict[str, Any] = {"engine": cfg.engine}
    wall0 = time.perf_counter()
    if cfg.engine == "sim":
        for n, item in enumerate(items, 1):
            for r in cfg.runs:
                records[item.id][r.key] = _sim_run(item, r, cfg)
            say(f"[{n}/{len(items)}] {item.id}")
    else:
        def save() -> None:
            if checkpoint is not None:
                done = [it for it in items if records[it.id]]
                checkpoint({**_result(cfg, done, records, env), "partial": True})

        env.update(asyncio.run(_llama_all(cfg, items, records, say, engine, save)))
    env["wall_s"] = time.perf_counter() - wall0
    return _result(cfg, items, records, env)


def _result(cfg: BenchConfig, items: Sequence[BfclItem],
            records: Mapping[str, Mapping[str, Mapping[str, Any]]],
            env: Mapping[str, Any]) -> dict[str, Any]:
    p = get_profile(cfg.profile)
    result: dict[str, Any] = {
        "benchmark": "bfcl",
        "params": {**asdict(cfg), "strategies": list(cfg.strategies),
                   "dialects": list(cfg.dialects), "framings": list(cfg.framings),
                   "runs": list(cfg.run_keys)},
        "profile": {"name": p.name, "law": p.description, "mean_s": p.mean_s,
                    "range_s": [p.lo_s, p.hi_s]},
        "environment": dict(env),
        "n_items": len(items),
        "strategies": summarize([it.id for it in items], records, cfg.run_keys),
        "items": [
            {"id": it.id, "category": it.category, "question": it.question,
             "n_expected_calls": (sum(len(t) for t in it.ground_truth) if it.multi_turn
                                  else len(it.ground_truth)),
             "ground_truth": ([list(t) for t in it.ground_truth] if it.multi_turn
                              else [{fn: a} for fn, a in ground_truth_calls(it)]),
             "runs": records[it.id]}
            for it in items
        ],
    }
    return result


async def _llama_all(
    cfg: BenchConfig, items: list[BfclItem], records: dict[str, dict[str, dict[str, Any]]],
    say: Callable[[str], None], engine: Engine | None,
    on_item: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    own = engine is None
    t = time.perf_counter()
    if engine is None and cfg.engine == "openai":
        from asynclm.engines.openai_http import connect

        assert cfg.base_url is not None
        engine = await connect(cfg.base_url, cfg.model)
    elif engine is None:
        engine = await asyncio.to_thread(
            LlamaCppEngine.from_name, cfg.model, n_threads=cfg.threads, n_ctx=cfg.n_ctx,
            **({"lora_path": cfg.adapter} if cfg.adapter else {}))
    env: dict[str, Any] = {"model": cfg.model, "load_s": time.perf_counter() - t,
                           "threads": getattr(engine, "n_threads", None)}
    try:
        await _llama_warmup(engine)
        for group in _prompt_groups(cfg.runs):
            k = len(group)
            for n, item in enumerate(items):
                order = [group[(n + j) % k] for j in range(k)]  # rotate the order
                line = []
                for r in order:
                    try:
                        rec = await _llama_run(engine, item, r, cfg)
                    except Exception as exc:  # noqa: BLE001 - one failing run never ends the run
                        rec = _error_record(exc)
                    rec["run_order"] = order.index(r)
                    records[item.id][r.key] = rec
                    lat = rec.get("latency_s")
                    line.append(f"{r.key} {lat:.2f}s {'ok' if rec['valid'] else 'x'}"
                                if lat is not None else f"{r.key} error")
                say(f"[{n + 1}/{len(items)}] {item.id}: " + ", ".join(line))
                on_item()
    finally:
        if own:
            await engine.aclose()
    return env
