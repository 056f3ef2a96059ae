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

Lower bound of a run (``lb_s``), from that run's own measurements, in the paper's model
(``latency.lower_bound``): with ``P`` the initial prefill, ``D`` the run's total decode time over
``N`` generated tokens (``τ = D / N``), ``A`` the decode time after the last interrupt was
injected (the answer, which needs every result), ``G_i = τ · tokens(call block i)`` and ``E_i``
call ``i``'s measured execution time (``started_at → ended_at``; 0 if it never ran or its result
was never injected), over the calls written before the last injection (later ones are decoded
within ``A``). ``G_i`` is an estimate (mean ``τ``, the call's text tokenized on its own); where
the estimates sum to more than the measured decode they are part of (``D − T − A``), they are
scaled down to it, so the bound never exceeds the measured time::

    LB = P + max(D − T − A, max_i (G_i + E_i)) + A

with ``T`` the decode time of the trap blocks the model wrote (waiting is not work), i.e. the
same decode work and the same tool times with perfect overlap and free injections. It is
computed with ``latency.lower_bound(G + [D − T − A − ΣG], E + [0], prefix=P, suffix=A)``; where
calls must keep their order (one tool instance), each depends on the previous one and the
longest chain counts too.
Efficiency = LB ÷ measured latency.

The paper's bound takes injections as free, as they nearly are on a GPU. On a CPU, appending a
result's tokens to the context costs about as much per token as prefill, and every strategy
that shows the model its results pays it. ``lb_ingest_s`` is therefore also reported: the same
bound with ``I``, the run's measured interrupt time (result tokens appended), counted as
model-track work that cannot overlap decoding::

    LB_ingest = P + max(D − T − A + I, max_i (G_i + E_i)) + A

``efficiency_ingest`` = LB_ingest ÷ measured latency. Summaries leave both out for strategies
that re-send the whole context: their result ingest is inside a re-prefill, not measured apart.

Multi-turn categories (``multi_turn_*``) and the joined ``multi-step-parallel`` set run in
:mod:`.run_multi`: one session per turn over the accumulated conversation, tools backed by the
real BFCL classes (:mod:`.multi_turn`; methods called directly, one instance per class per run,
``order_by=Ordered((sample, class))`` so calls on one instance keep emission order), validity
from BFCL's ``multi_turn_checker`` on the calls as they took effect. Their records hold the sums
over turns and one entry per turn. Their lower bound keeps calls on one instance in order.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from asynclm import latency
from asynclm.bench._stats import quantile, summary
from asynclm.bench.bfcl.bfcl_prompt import (
    DecodeError, bfcl_messages, decode_python_list, format_answer,
)
from asynclm.bench.bfcl.checker import check
from asynclm.bench.bfcl.data import (
    MULTI_STEP_PARALLEL, MULTI_TURN_CATEGORIES, RUNNABLE_CATEGORIES, BfclItem, ground_truth_calls,
    load, parts,
)
from asynclm.bench.bfcl.timing import CallTimer, call_duration, canonical_args, get_profile
from asynclm.engines.base import ChatMessage, Engine
from asynclm.protocol import format_call, render_trap
from asynclm.runtime import CallRecord, Session, SessionConfig, SessionResult, get_strategy
from asynclm.tools import Toolbox
from asynclm.trace import SpanKind, Trace

__all__ = [
    "BFCL_PROMPT", "DEFAULT_STRATEGIES", "MALFORMED_ERRORS", "BenchConfig", "lower_bound",
    "merge_results", "run_bfcl", "summarize",
]

DEFAULT_STRATEGIES = ("sync", "sync-reprefill", "sync-parallel", "async")
BFCL_PROMPT = "bfcl-prompt"
MALFORMED_ERRORS = frozenset({"MalformedCall", "ToolArgumentError", "UnknownToolError"})
"""Error types of calls that did not parse or validate (the rest are well-formed)."""
SIM_ANSWER = "Done: every requested call was made."


@dataclass(frozen=True, slots=True)
class BenchConfig:
    category: str = "parallel"
    engine: Literal["sim", "llamacpp", "openai"] = "sim"
    model: str = "qwen2.5-coder-1.5b"
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    limit: int | None = None
    offset: int = 0
    seed: int = 0
    tpot_ms: float = 5.0
    ttft_ms: float = 0.0
    profile: str = "paper"
    cheat_sheet: bool = False
    max_tokens: int = 384
    deadline_s: float | None = 120.0
    threads: int | None = None
    write_ahead: bool = False
    """Multi-turn, simulator: the oracle writes a call on an instance right after the previous
    one was written (True), or only once its result is in (False, the paper's multi-step)."""
    ordered: bool = True
    """Multi-turn: calls on one BFCL instance keep emission order (``Ordered`` keys)."""

    base_url: str | None = None
    """``openai`` engine: the server (its tokenizer comes from ``model``)."""
    n_ctx: int = 8192
    """``llamacpp``: the context window (multi-turn prompts with BFCL's function documents need
    more than the default)."""
    adapter: str | None = None
    """``llamacpp``: a GGUF LoRA adapter applied to ``model`` (``asynclm finetune export``)."""
    enforce: bool = True
    """The runtime's protocol enforcement (``SessionConfig.enforce``); off to measure what a
    model does unaided."""

    @property
    def categories(self) -> list[str]:
        """``category`` may name several, comma-separated (``limit`` applies to each)."""
        return [c.strip() for c in self.category.split(",") if c.strip()]

    def validate(self) -> None:
        runnable = (*RUNNABLE_CATEGORIES, *MULTI_TURN_CATEGORIES, MULTI_STEP_PARALLEL)
        if not self.categories:
            raise ValueError("no category")
        for category in self.categories:
            if category not in runnable:
                raise ValueError(
                    f"category {category!r} is not runnable; choose one of {', '.join(runnable)}")
            if category not in RUNNABLE_CATEGORIES and BFCL_PROMPT in self.strategies:
                raise ValueError(f"{BFCL_PROMPT} runs single-turn categories only")
        if self.engine not in ("sim", "llamacpp", "openai"):
            raise ValueError(f"unknown engine {self.engine!r}; choose sim, llamacpp or openai")
        if self.engine == "openai" and not self.base_url:
            raise ValueError("--engine openai needs --base-url")
        if self.adapter is not None and self.engine != "llamacpp":
            raise ValueError("--adapter needs --engine llamacpp")
        if not self.strategies:
            raise ValueError("no strategies")
        if len(set(self.strategies)) != len(self.strategies):
            raise ValueError("a strategy is listed twice")
        for s in self.strategies:
            if s != BFCL_PROMPT:
                get_strategy(s)  # raises with the list of names
        get_profile(self.profile)
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")


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

    box = Toolbox.from_bfcl(item.functions, handler=handler)
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


def cml_messages(item: BfclItem, session: Session, cfg: BenchConfig) -> list[ChatMessage]:
    """Session's CML system prompt (an item's own system message appended to it), then the
    item's other first-turn messages."""
    msgs = _turn(item, cfg)
    extra = "\n\n".join(m["content"] for m in msgs if m.get("role") == "system")
    system = session.system + (f"\n\n{extra}" if extra else "")
    return [ChatMessage("system", system)] + [
        ChatMessage(m["role"], m["content"]) for m in msgs if m.get("role") != "system"]


def bfcl_chat(item: BfclItem, cfg: BenchConfig) -> list[ChatMessage]:
    return [ChatMessage(m["role"], m["content"])
            for m in bfcl_messages(item.functions, _turn(item, cfg))]


# -- the lower bound -----------------------------------------------------------------------------


def lower_bound(
    result: SessionResult, tokens_of: Callable[[str], int], *,
    order_key: Callable[[CallRecord], Hashable | None] | None = None,
    futures: bool | None = False,
) -> dict[str, float]:
    """The run's lower bound (see the module docstring) and its parts, in seconds.

    ``order_key``: calls with equal non-None keys must run one after another in emission order
    (a stateful tool instance); each then depends on the previous one, and the bound takes the
    longest such chain (``futures=True``: the model may write a call before its predecessor's
    result is in; ``None``: it may if it did so in this run, since then that result was not
    needed to write the call). Trap blocks are not work: their decode time is left out of ``D``."""
    spans = result.trace.model_spans
    P = sum(s.duration for s in spans if s.kind is SpanKind.PREFILL)
    decode = [s for s in spans if s.kind is SpanKind.DECODE]
    D = sum(s.duration for s in decode)
    tau = D / result.n_generated if result.n_generated else 0.0
    injected = [c.injected_at for c in result.calls if c.injected_at is not None]
    A = 0.0
    calls = result.calls
    if injected:
        t = max(injected)
        A = sum(max(0.0, s.end - max(s.start, t)) for s in decode)
        # a call written after the last injection is part of A's decode; its result never
        # reached the model, so it holds nothing up
        calls = [c for c in calls if c.emitted_at <= t]
    T = tau * tokens_of(render_trap()) * result.counters.get("traps", 0)
    E = [(c.duration_s or 0.0) if c.injected_at is not None else 0.0 for c in calls]
    deps: dict[int, tuple[int, ...]] = {}
    if order_key is not None:
        last: dict[Hashable, int] = {}
        for i, c in enumerate(calls):
            key = order_key(c)
            if key is not None:
                if key in last:
                    deps[i] = (last[key],)
                last[key] = i
    if futures is None:
        futures = any(calls[i].emitted_at < (calls[u].injected_at or math.inf)
                      for i, (u,) in deps.items())
    ingest = sum(s.duration for s in spans if s.kind is SpanKind.INTERRUPT)  # I
    return bound_parts(P=P, D=D, A=A, T=T, ingest=ingest,
                       G=[tau * tokens_of(c.raw) for c in calls], E=E, deps=deps,
                       futures=futures)


def bound_parts(
    *, P: float, D: float, A: float, T: float, ingest: float, G: Sequence[float],
    E: Sequence[float], deps: latency.Deps | None = None, futures: bool = False,
) -> dict[str, float]:
    """Both bounds from a run's measured parts (see the module docstring).

    ``G`` are estimates (mean τ, a call's text tokenized on its own); the calls are part of the
    decode before the answer, so where they sum past it (``D − T − A``) they are scaled down."""
    work = max(0.0, D - A - T)
    if (total := sum(G)) > work:
        G = [g * work / total for g in G]
    rest = max(0.0, work - sum(G))

    def bound(extra: float) -> float:
        return latency.lower_bound([*G, rest + extra], [*E, 0.0], deps, futures=futures,
                                   prefix=P, suffix=A)

    return {"lb_s": bound(0.0), "lb_ingest_s": bound(ingest), "ingest_s": ingest,
            "prefill_s": P, "decode_s": D, "answer_s": A, "sum_G_s": sum(G), "trap_decode_s": T,
            "max_G_plus_E_s": max((g + e for g, e in zip(G, E, strict=True)), default=0.0)}


# -- one run -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _bound_args(rec: CallRecord, tools: Toolbox) -> dict[str, Any]:
    """The call's keyword arguments, positional ones bound to their parameter names."""
    args = dict(rec.args)
    if rec.pos and rec.fn in tools:
        for name, v in zip(tools[rec.fn].param_names, rec.pos, strict=False):
            args.setdefault(name, v)
    return args


def _malformed(rec: CallRecord) -> bool:
    return rec.status == "error" and rec.error_type in MALFORMED_ERRORS


def session_record(
    item: BfclItem, result: SessionResult, tools: Toolbox, tokens_of: Callable[[str], int]
) -> dict[str, Any]:
    """The JSON record of one runtime run."""
    made = [c for c in result.calls if c.status != "error"]
    valid, error = check(item, [(c.fn, _bound_args(c, tools)) for c in made])
    b = result.trace.breakdown()
    lb = lower_bound(result, tokens_of)
    t0 = result.trace.start or 0.0
    return {
        "latency_s": result.latency_s,
        "first_token_s": result.first_token_s,
        "breakdown": b.as_dict(),
        "n_calls": len(result.calls),
        "n_well_formed": sum(1 for c in result.calls if not _malformed(c)),
        "n_error": sum(1 for c in result.calls if c.status == "error"),
        "calls": [
            {"id": c.id, "fn": c.fn, "args": _jsonable(_bound_args(c, tools)),
             "status": c.status, "error_type": c.error_type,
             "error": (c.error or "")[:200] or None,
             "emitted_s": c.emitted_at - t0,
             "exec_s": c.duration_s,
             "injected_s": None if c.injected_at is None else c.injected_at - t0}
            for c in result.calls
        ],
        "valid": valid,
        "check_error": error[:500] if error else None,
        **lb,
        "efficiency": lb["lb_s"] / result.latency_s if result.latency_s > 0 else None,
        "efficiency_ingest": (lb["lb_ingest_s"] / result.latency_s if result.latency_s > 0
                              else None),
        "n_generated": result.n_generated,
        "n_injected": result.n_injected,
        "stop_reason": result.stop_reason,
        "counters": result.counters,
        "transcript": result.transcript,
    }


async def generate(
    engine: Engine, messages: Sequence[ChatMessage], max_tokens: int
) -> tuple[str, Trace, float, float | None, int, str]:
    """One plain generation: ``(text, trace, latency_s, first_token_s, n_generated, stop)``."""
    loop = asyncio.get_running_loop()
    trace = Trace(meta={"strategy": BFCL_PROMPT})
    t0 = loop.time()
    tokens = engine.tokenize_chat(messages)
    cached = await engine.prefill(tokens)
    t = loop.time()
    trace.add_span("prefill", "prefill", t0, t, tokens=len(tokens), cached=cached)
    out: list[int] = []
    first = None
    stop = "max_tokens"
    n = 0
    while n < max_tokens:
        tok = await engine.step()
        t1 = loop.time()
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


def bfcl_record(
    item: BfclItem, tools: Toolbox, text: str, trace: Trace, latency_s: float,
    first_token_s: float | None, n_generated: int, stop: str,
) -> dict[str, Any]:
    """The JSON record of one ``bfcl-prompt`` run."""
    decode_error = None
    try:
        calls = decode_python_list(text)
    except DecodeError as exc:
        calls, decode_error = [], str(exc)
    if decode_error:
        valid, error = False, f"decode: {decode_error}"
        if item.category in ("irrelevance", "live_irrelevance"):
            valid, error = True, None  # BFCL: an undecodable answer made no call
    else:
        valid, error = check(item, calls)
    well = 0
    rows = []
    for c in calls:
        for fn, args in c.items():
            problem = None
            try:
                tools.get_checked(fn).validate(args)
                well += 1
            except Exception as exc:  # noqa: BLE001 - recorded
                problem = f"{type(exc).__name__}: {exc}"[:200]
            rows.append({"fn": fn, "args": _jsonable(args), "error": problem})
    n_calls = len(rows) + (1 if decode_error and text.strip() else 0)
    b = trace.breakdown()
    P = sum(s.duration for s in trace.model_spans if s.kind is SpanKind.PREFILL)
    return {
        "latency_s": latency_s,
        "first_token_s": first_token_s,
        "breakdown": b.as_dict(),
        "n_calls": n_calls,
        "n_well_formed": well,
        "n_error": n_calls - well,
        "calls": rows,
        "valid": valid,
        "check_error": error[:500] if error else None,
        "decode_error": decode_error,
        "lb_s": latency_s, "prefill_s": P, "decode_s": b.decode_s, "answer_s": b.decode_s,
        "sum_G_s": 0.0, "max_G_plus_E_s": 0.0,
        "efficiency": None,
        "n_generated": n_generated,
        "n_injected": 0,
        "stop_reason": stop,
        "counters": {},
        "transcript": text,
    }


# -- engines -------------------------------------------------------------------------------------


def _sim_run(item: BfclItem, strategy: str, cfg: BenchConfig) -> dict[str, Any]:
    if item.multi_turn:
        from asynclm.bench.bfcl.run_multi import sim_conversation

        return sim_conversation(item, strategy, cfg)
    from asynclm.engines.sim import (
        OraclePolicy, ScriptedPolicy, SimCall, SimCosts, SimEngine, SimTask,
    )
    from asynclm.runtime import run_virtual

    costs = SimCosts(tpot_s=cfg.tpot_ms / 1000, ttft_s=cfg.ttft_ms / 1000)
    tools = build_tools(item, cfg)
    gt = ground_truth_calls(item)
    if strategy == BFCL_PROMPT:
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
    engine = SimEngine(OraclePolicy(task), costs)
    session = _session(engine, tools, strategy, cfg, item)
    result = run_virtual(session.run(cml_messages(item, session, cfg)))
    return session_record(item, result, tools,
                          lambda s: len(engine.tokenize(s, special=True)))


def _session(engine: Engine, tools: Toolbox, strategy: str, cfg: BenchConfig,
             item: BfclItem, system: str | None = None) -> Session:
    """A session for one run (or turn); a joined item gets ``max_tokens`` per sample."""
    budget = cfg.max_tokens * len(parts(item))
    return Session(
        engine, tools, strategy=strategy, system=system,
        config=SessionConfig(max_tokens=budget, deadline_s=cfg.deadline_s, enforce=cfg.enforce),
        trace_meta={"benchmark": "bfcl", "item": item.id, "engine": cfg.engine},
    )


async def _llama_warmup(engine: Engine) -> None:
    await engine.prefill(engine.tokenize_chat([ChatMessage("user", "Say OK.")]))
    for _ in range(4):
        await engine.step()


async def _llama_run(engine: Engine, item: BfclItem, strategy: str,
                     cfg: BenchConfig) -> dict[str, Any]:
    if item.multi_turn:
        from asynclm.bench.bfcl.run_multi import llama_conversation

        return await llama_conversation(engine, item, strategy, cfg)
    tools = build_tools(item, cfg)
    if strategy == BFCL_PROMPT:
        messages = bfcl_chat(item, cfg)
        await engine.prefill(engine.tokenize_chat(messages))  # warm: same state for every run
        out = await generate(engine, messages, cfg.max_tokens)
        return bfcl_record(item, tools, *out)
    session = _session(engine, tools, strategy, cfg, item)
    messages = cml_messages(item, session, cfg)
    await session.warm_up(messages)  # same cache state for every run
    result = await session.run(messages)
    return session_record(item, result, tools,
                          lambda s: len(engine.tokenize(s, special=True)))


def _prompt_groups(strategies: Sequence[str]) -> list[list[str]]:
    """Strategies grouped by prompt format (BFCL's own, CML), each group run as one pass over
    the items: consecutive runs then share their format's instructions in the KV cache, which
    spares re-processing them for every item (not measured either way)."""
    groups = [[s for s in strategies if s == BFCL_PROMPT],
              [s for s in strategies if s != BFCL_PROMPT]]
    return [g for g in groups if g]


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
            for s in cfg.strategies:
                records[item.id][s] = _sim_run(item, s, cfg)
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
        "params": {**asdict(cfg), "strategies": list(cfg.strategies)},
        "profile": {"name": p.name, "law": p.description, "mean_s": p.mean_s,
                    "range_s": [p.lo_s, p.hi_s]},
        "environment": dict(env),
        "n_items": len(items),
        "strategies": summarize([it.id for it in items], records, cfg.strategies),
        "items": [
            {"id": it.id, "question": it.question,
             "n_expected_calls": (sum(len(t) for t in it.ground_truth) if it.multi_turn
                                  else len(it.ground_truth)),
             "ground_truth": ([list(t) for t in it.ground_truth] if it.multi_turn
                              else [{fn: a} for fn, a in ground_truth_calls(it)]),
             "runs": records[it.id]}
            for it in items
        ],
    }
    return result


def merge_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several results of the same configuration over different items (e.g. ``--offset`` runs)
    as one: items concatenated, summaries recomputed, wall times added."""
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]

    def setup(r: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r["params"].items() if k not in ("limit", "offset")}

    if any(setup(r) != setup(first) for r in results[1:]):
        raise ValueError("results differ in more than limit/offset: not mergeable")
    items = [it for r in results for it in r["items"]]
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("an item occurs in two results")
    strategies = first["params"]["strategies"]
    records = {it["id"]: it["runs"] for it in items}
    env = dict(first.get("environment", {}))
    env["wall_s"] = sum(r.get("environment", {}).get("wall_s", 0.0) for r in results)
    merged = {k: v for k, v in first.items() if k != "partial"}
    if any(r.get("partial") for r in results):  # a stopped run's checkpoint
        merged["partial"] = True
    return {**merged, "environment": env, "n_items": len(items), "items": items,
            "strategies": summarize(ids, records, strategies),
            "merged_from": [c for r in results for c in r.get("merged_from") or [r.get("command")]]}


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
        from asynclm.engines.llamacpp import LlamaCppEngine

        engine = await asyncio.to_thread(
            LlamaCppEngine.from_name, cfg.model, n_threads=cfg.threads, n_ctx=cfg.n_ctx,
            **({"lora_path": cfg.adapter} if cfg.adapter else {}))
    env: dict[str, Any] = {"model": cfg.model, "load_s": time.perf_counter() - t,
                           "threads": getattr(engine, "n_threads", None)}
    try:
        await _llama_warmup(engine)
        for group in _prompt_groups(cfg.strategies):
            k = len(group)
            for n, item in enumerate(items):
                order = [group[(n + j) % k] for j in range(k)]  # rotate the order
                line = []
                for s in order:
                    try:
                        rec = await _llama_run(engine, item, s, cfg)
                    except Exception as exc:  # noqa: BLE001 - one failing run never ends the run
                        rec = _error_record(exc)
                    rec["run_order"] = order.index(s)
                    records[item.id][s] = rec
                    lat = rec.get("latency_s")
                    line.append(f"{s} {lat:.2f}s {'ok' if rec['valid'] else 'x'}"
                                if lat is not None else f"{s} error")
                say(f"[{n + 1}/{len(items)}] {item.id}: " + ", ".join(line))
                on_item()
    finally:
        if own:
            await engine.aclose()
    return env


# -- summaries -----------------------------------------------------------------------------------


def _med(xs: Sequence[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return quantile(ys, 0.5) if ys else None


def summarize(
    ids: Sequence[str], records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    strategies: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per strategy over the items ``ids``: latency median/p10/p90, speedup vs sync, accuracy,
    well-formed call rate, efficiency and the medians of the time breakdown."""
    out: dict[str, dict[str, Any]] = {}
    base = {i: records[i]["sync"]["latency_s"] for i in ids
            if "sync" in records[i] and records[i]["sync"].get("latency_s")}
    for s in strategies:
        recs = [records[i][s] for i in ids if s in records[i]]
        ok = [r for r in recs if r.get("latency_s") is not None]
        lat = [r["latency_s"] for r in ok]
        appends = s != BFCL_PROMPT and get_strategy(s).resume == "append"
        lb_i = {i: records[i][s]["lb_ingest_s"] for i in ids if appends and s in records[i]
                and records[i][s].get("latency_s") and records[i][s].get("lb_ingest_s")}
        eff_i = [records[i][s]["efficiency_ingest"] for i in lb_i]
        st = {k: (None if v != v else v) for k, v in summary(lat).items()}  # NaN -> None
        n_calls = sum(r["n_calls"] for r in recs)
        row: dict[str, Any] = {
            "n": len(recs),
            "n_errors": len(recs) - len(ok),
            "median_s": st["median"], "p10_s": st["p10"], "p90_s": st["p90"], "mean_s": st["mean"],
            "accuracy": sum(1 for r in recs if r.get("valid")) / len(recs) if recs else None,
            "n_valid": sum(1 for r in recs if r.get("valid")),
            "calls_per_item": n_calls / len(recs) if recs else None,
            "well_formed_rate": (sum(r["n_well_formed"] for r in recs) / n_calls
                                 if n_calls else None),
            "first_token_median_s": _med([r.get("first_token_s") for r in ok]),
            "efficiency_median": _med([r.get("efficiency") for r in ok]),
            "efficiency_p10": (quantile([r["efficiency"] for r in ok if r.get("efficiency")], 0.1)
                               if any(r.get("efficiency") for r in ok) else None),
            "lb_median_s": _med([r.get("lb_s") for r in ok]),
            "efficiency_ingest_median": _med(eff_i),
            "efficiency_ingest_p10": quantile(eff_i, 0.1) if eff_i else None,
            "lb_ingest_median_s": _med(list(lb_i.values())),
            "breakdown_median_s": {
                k: _med([r["breakdown"][k] for r in ok])
                for k in ("decode_s", "prefill_s", "interrupt_s", "idle_s", "tool_s",
                          "tool_busy_s", "overlap_s")
            } if ok else {},
            "tokens_median": _med([r.get("n_generated") for r in ok]),
            "stop_reasons": _count(r.get("stop_reason", "error") for r in recs),
            # protocol behaviour: runs where the model wrote a result/interrupt marker itself,
            # wrote a trap, or ended its text with results still pending
            **{f"runs_{k}": sum(1 for r in recs if r.get("counters", {}).get(k))
               for k in ("forged", "traps", "eos_waits")},
        }
        if base and s != BFCL_PROMPT:
            pairs = [(base[i], records[i][s]["latency_s"]) for i in ids
                     if i in base and s in records[i] and records[i][s].get("latency_s")]
            if pairs and st["median"]:
                row["speedup_vs_sync"] = quantile(list(base.values()), 0.5) / st["median"]
                row["speedup_vs_sync_per_item_median"] = quantile([a / b for a, b in pairs], 0.5)
            # the most any schedule doing this run's work could gain over the measured sync
            ceil = [base[i] / b for i, b in lb_i.items() if i in base]
            if ceil:
                row["bound_vs_sync_per_item_median"] = quantile(ceil, 0.5)
        out[s] = row
    return out


def _count(xs: Any) -> dict[str, int]:
    c: dict[str, int] = {}
    for x in xs:
        c[str(x)] = c.get(str(x), 0) + 1
    return c


def default_config(**kw: Any) -> BenchConfig:
    """A :class:`BenchConfig` with ``strategies`` given as a comma list or a sequence."""
    s = kw.get("strategies")
    if isinstance(s, str):
        kw["strategies"] = tuple(x.strip() for x in s.split(",") if x.strip())
    elif s is not None:
        kw["strategies"] = tuple(s)
    return BenchConfig(**kw)


