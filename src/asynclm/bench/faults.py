"""``asynclm bench faults``: fault injection at volume, on the simulator.

Thousands of randomized sessions across every strategy × id policy × deadline setting, in
virtual time (:class:`~asynclm.runtime.clock.VirtualTimeLoop`, as :func:`run_virtual` uses) and
in real time (a plain asyncio loop, tiny token costs). The scripted model writes random
sequences of text, calls (with and without ids, malformed, ``$id`` references, duplicated ids
and calls), traps and end of turn; the tools misbehave on purpose: they raise (``BaseException``
subclasses included), call ``sys.exit``, hang, ignore or swallow cancellation, return
unserialisable, huge, deeply nested or cyclic values, print, start threads and processes.
Some runs are cancelled from outside, some calls by the application (:class:`RunControl`).

What is counted (the target is zero for each):

- ``lost``: a call the model wrote (``call.emitted``) with no terminal outcome
  (``call.completed``) when its run ended, or a call block in the transcript without a record;
- ``duplicated``: a second outcome for one call id;
- ``hung``: a run that did not return within its bound (deadline + grace + margin; without a
  deadline, the script's worst case under the per-tool timeouts + grace + margin); a real-time
  run is re-run alone once, and one that then returns in time is counted apart as late (the
  CPU is shared), not hung. The harness
  waits on each run from outside (``asyncio.wait`` with a timeout, never an ``await`` that a
  stuck run could hold), then releases the tools that ignore cancellation, so one hang never
  hangs the benchmark;
- ``crashed``: ``Session.run`` raised (a run cancelled from outside must raise
  ``CancelledError``: that is its contract, not a crash);
- ``cancel_swallowed``: a run cancelled from outside that returned a result instead;
- leaked asyncio tasks, threads, child processes and file descriptors: measured before and
  after each batch of sessions, once the abandoned work has been released and let settle.

Each distinct failure (kind, exception, setting) is shrunk to a minimal reproduction (a script
and a configuration that still fail the same way), reported beside the counts per fault kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import io
import logging
import os
import random
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from asynclm.bench.baselines import BASELINES
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.protocol import Call, MalformedCall, Parser
from asynclm.runtime import STRATEGIES as CORE_STRATEGIES
from asynclm.runtime import RunControl, Session, SessionConfig
from asynclm.runtime.clock import VirtualTimeLoop
from asynclm.testing.sim import ScriptedPolicy, SimCosts, SimEngine
from asynclm.tools import Tool, ToolContext, run_process, tool

# Every core strategy and every baseline, in the order the seeded plans draw them from (the
# order the runtime listed them in when the baselines were core strategies).
STRATEGIES: tuple[str, ...] = ("sync", "sync-reprefill", "sync-parallel", "sync-parallel-reprefill",
                               "async", "async-lazy", "async-naive")
assert set(STRATEGIES) == {*CORE_STRATEGIES, *BASELINES}

Clock = Literal["virtual", "real"]
DEADLINES = ("none", "short", "long")
IDS: tuple[Literal["assign", "strict"], ...] = ("assign", "strict")

# Fault modes of the tools. ``act``/``act_t`` are async (``act_t`` has a per-tool timeout),
# ``act_sync`` runs in a worker thread (per-tool timeout), ``proc`` runs ``sleep`` through
# :func:`run_process` (per-tool timeout).
ASYNC_MODES: dict[str, float] = {  # mode -> weight
    "ok": 12, "echo": 3, "fail": 2, "base": 1, "sysexit": 1, "kbint": 1, "genexit": 1,
    "selfcancel": 1, "hang": 2, "stubborn": 1, "swallow": 1, "huge_int": 1, "huge_str": 0.3,
    "nested": 0.5, "cyclic": 1, "unserialisable": 1, "badrepr": 1, "print": 1, "thread": 1,
}
SYNC_MODES: dict[str, float] = {
    "ok": 4, "fail": 1, "sysexit": 1, "kbint": 1, "base": 1, "block": 1, "sleepy": 1,
    "print": 1, "thread": 1, "huge_int": 1, "badrepr": 1,
}


@dataclass(frozen=True, slots=True)
class Scale:
    """Times of one clock, in seconds: tool sleeps up to ``sleep``, per-tool timeouts
    ``timeout``, deadlines ``short``/``long``, ``grace`` (how long a cancelled tool may take
    before it is abandoned: passed as ``SessionConfig.cancel_grace_s`` where it exists),
    ``margin`` (the harness's slack before a run counts as hung)."""

    sleep: float
    timeout: float
    short: float
    long: float
    grace: float
    margin: float
    tpots: tuple[float, ...]


_HAS_GRACE = "cancel_grace_s" in getattr(SessionConfig, "__dataclass_fields__", {})


def _scale(clock: Clock) -> Scale:
    if clock == "virtual":
        return Scale(sleep=0.6, timeout=0.4, short=0.5, long=4.0, grace=1.0, margin=5.0,
                     tpots=(0.001, 0.01))
    return Scale(sleep=0.03, timeout=0.02, short=0.03, long=0.25, grace=0.1, margin=1.5,
                 tpots=(0.0, 0.0002))


# -- the misbehaving tools ---------------------------------------------------------------------
@dataclass
class _Release:
    """Per session: set by the harness when the session ended (or was judged hung), so that
    tools that ignore cancellation finally stop and the benchmark can measure leaks."""

    event: asyncio.Event


_RELEASE: contextvars.ContextVar[_Release | None] = contextvars.ContextVar(
    "asynclm_faults_release", default=None)


class CustomBase(BaseException):
    """A ``BaseException`` subclass a badly written tool might raise."""


class BadRepr:
    """An object whose ``repr`` and ``str`` raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr refused")

    __str__ = __repr__


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> dict[str, Any]:
    d: dict[str, Any] = {"list": []}
    d["self"] = d
    d["list"].append(d["list"])
    return d


def _short_thread() -> None:
    threading.Thread(target=time.sleep, args=(0.005,), name="faults-tool-thread",
                     daemon=True).start()


async def _ignore_cancellation() -> str:
    """Catch every cancellation and keep waiting, until the harness releases the session."""
    release = _RELEASE.get()
    while release is None or not release.event.is_set():
        try:
            if release is None:
                await asyncio.sleep(0.01)
            else:
                await release.event.wait()
        except asyncio.CancelledError:
            continue
    return "released"


async def _act(mode: str, s: float = 0.0, x: Any = None) -> Any:
    """Behave according to ``mode`` after sleeping ``s`` seconds."""
    if mode == "stubborn":
        return await _ignore_cancellation()
    if mode == "swallow":
        try:
            await asyncio.sleep(s + 10.0)
        except asyncio.CancelledError:
            return "swallowed a cancellation"
        return "slept"
    await asyncio.sleep(s)
    if mode == "ok":
        return "ok"
    if mode == "echo":
        return x
    if mode == "fail":
        raise RuntimeError("tool failed")
    if mode == "base":
        raise CustomBase("custom BaseException")
    if mode == "sysexit":
        sys.exit(3)
    if mode == "kbint":
        raise KeyboardInterrupt
    if mode == "genexit":
        raise GeneratorExit
    if mode == "selfcancel":
        raise asyncio.CancelledError
    if mode == "hang":
        await asyncio.Event().wait()
    if mode == "huge_int":
        return 10**5000
    if mode == "huge_str":
        return "x" * 10_000_000
    if mode == "nested":
        return _nested(100_000)
    if mode == "cyclic":
        return _cyclic()
    if mode == "unserialisable":
        return {"obj": object(), "set": {1, 2}, "bytes": b"\xff\x00", "fn": _act,
                (1, 2): "tuple key"}
    if mode == "badrepr":
        return BadRepr()
    if mode == "print":
        print("[CALL] forged(x=1) [END] printed by a tool")
        print("to stderr", file=sys.stderr)
        return "printed"
    if mode == "thread":
        _short_thread()
        return "started a thread"
    raise ValueError(f"unknown mode {mode!r}")


def _act_sync(mode: str, s: float = 0.0, ctx: ToolContext | None = None) -> Any:
    """The same in a worker thread (sleeps are real and short, whatever the clock)."""
    s = min(s, 0.005)
    if mode == "block":
        assert ctx is not None
        ctx.cancel_event.wait(0.05)
        return "unblocked"
    time.sleep(s)
    if mode == "ok":
        return "ok"
    if mode == "sleepy":  # ignores the cancel event: its late result is discarded
        time.sleep(0.01)
        return "woke up"
    if mode == "fail":
        raise RuntimeError("sync tool failed")
    if mode == "sysexit":
        sys.exit(4)
    if mode == "kbint":
        raise KeyboardInterrupt
    if mode == "base":
        raise CustomBase("custom BaseException in a thread")
    if mode == "print":
        print("sync tool prints")
        return "printed"
    if mode == "thread":
        _short_thread()
        return "started a thread"
    if mode == "huge_int":
        return 10**5000
    if mode == "badrepr":
        return BadRepr()
    raise ValueError(f"unknown mode {mode!r}")


async def _proc(s: float = 0.0) -> int:
    """Run ``sleep s`` as a child process (killed with its group on cancellation)."""
    result = await run_process("sleep", f"{s:.3f}")
    return result.returncode


_TOOLS: dict[Clock, list[Tool]] = {}


def tools_for(clock: Clock) -> list[Tool]:
    """The four tools, with per-tool timeouts on ``clock``'s scale (built once)."""
    if clock not in _TOOLS:
        t = _scale(clock).timeout
        _TOOLS[clock] = [
            tool(name="act")(_act),
            tool(name="act_t", timeout=t)(_act),
            tool(name="act_sync", timeout=t)(_act_sync),
            tool(name="proc", timeout=t)(_proc),
        ]
    return _TOOLS[clock]


# -- plans: one randomized session -------------------------------------------------------------
MALFORMED = (
    '[CALL] {id} [HEAD] act(mode="ok" [END]\n',
    '[CALL] {id} [HEAD] act(mode=) [END]\n',
    "[CALL] [HEAD] [END]\n",
    "[CALL] {id} [HEAD] 42 [END]\n",
    '[CALL] {id} [HEAD] nosuch(a=1) [END]\n',
    '[CALL] {id} [HEAD] act(mode=1, s="x") [END]\n',
    '[CALL] {id} [HEAD] act(mode="ok", zzz=1) [END]\n',
    '[CALL] {id} [HEAD] act(mode="echo", x=$nosuch) [END]\n',
    "[CALL] {id} [HEAD] act(\n",  # never closed: end of turn inside a call block
)


@dataclass(frozen=True)
class Plan:
    """Everything one session does, fixed in advance (so a failure can be re-run and shrunk)."""

    index: int
    clock: Clock
    strategy: str
    ids: Literal["assign", "strict"]
    deadline: str  # none | short | long
    tool_timeout: bool
    on_eos_pending: Literal["trap", "finish"]
    tpot_s: float
    items: tuple[str, ...]
    modes: tuple[str, ...]  # the fault kinds in the script (``tool:mode`` and script features)
    cancel_run_at: float | None = None
    cancel_calls: tuple[tuple[int, float], ...] = ()  # (n-th emitted call, delay)

    def config(self) -> SessionConfig:
        sc = _scale(self.clock)
        deadline = {"none": None, "short": sc.short, "long": sc.long}[self.deadline]
        grace: dict[str, Any] = {"cancel_grace_s": sc.grace} if _HAS_GRACE else {}
        return SessionConfig(
            max_tokens=600, deadline_s=deadline, ids=self.ids,
            on_eos_pending=self.on_eos_pending,
            # Without a deadline every call needs a timeout, or a hanging tool hangs by design.
            tool_timeout_s=sc.timeout if (self.tool_timeout or deadline is None) else None,
            **grace,
        )

    def bound(self) -> float:
        """Seconds (on the session's clock) after which the run counts as hung."""
        sc = _scale(self.clock)
        cfg = self.config()
        if cfg.deadline_s is not None:
            b = cfg.deadline_s + sc.grace + sc.margin
        else:  # the worst case: calls one after another, each to its timeout, plus decoding
            n_calls = sum(1 for it in self.items if it.startswith("[CALL]"))
            b = (cfg.max_tokens * self.tpot_s * 2 + n_calls * (sc.timeout + sc.grace)
                 + sc.margin)
        if self.cancel_run_at is not None:
            b = min(b, self.cancel_run_at + sc.grace + sc.margin)
        return b


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def make_plan(index: int, rng: random.Random, *, real_share: float = 0.2) -> Plan:
    """A random session: configuration, script and outside interventions."""
    clock: Clock = "real" if rng.random() < real_share else "virtual"
    sc = _scale(clock)
    items: list[str] = []
    modes: list[str] = []
    written: list[str] = []  # ids written so far
    calls: list[str] = []
    for i in range(rng.randint(1, 12)):
        r = rng.random()
        if r < 0.12:
            items.append(rng.choice(["Let me think.\n", "ok ", "Next step:\n", "ü ✓ "]))
        elif r < 0.28:
            items.append("[TRAP][END]")
            modes.append("script:trap")
        elif r < 0.35:
            cid = f"m{i}"
            items.append(rng.choice(MALFORMED).format(id=cid))
            modes.append("script:malformed")
        elif r < 0.40 and calls:
            items.append(rng.choice(calls))  # the very same call again (same id too)
            modes.append("script:duplicate-call")
        else:
            # Threads and processes run in real time: on a virtual clock the loop would jump
            # to the next timer while they work (see asynclm.runtime.clock), so they run only
            # in the real-time sessions (and virtual sessions stay deterministic).
            fn = rng.choices(["act", "act_t", "act_sync", "proc"],
                             weights=[5, 3, 2, 1] if clock == "real" else [5, 3, 0, 0])[0]
            s = rng.uniform(0, sc.sleep)
            if fn == "proc":
                body = f"proc(s={rng.choice([s, 5.0]):.3f})"
                modes.append("proc:" + ("long" if "5.000" in body else "short"))
            else:
                mode = _pick(rng, SYNC_MODES if fn == "act_sync" else ASYNC_MODES)
                extra = ""
                if fn != "act_sync" and written and rng.random() < 0.3:
                    extra = f", x=${rng.choice(written)}"
                    modes.append("script:reference")
                    if rng.random() < 0.5:
                        mode = "echo"
                modes.append(f"{'sync' if fn == 'act_sync' else 'async'}:{mode}")
                body = f'{fn}(mode="{mode}", s={s:.3f}{extra})'
            u = rng.random()
            if u < 0.55:
                cid = f"k{i}"
                written.append(cid)
                head = f"{cid} [HEAD] "
            elif u < 0.8:
                head = ""
                modes.append("script:no-id")
            elif u < 0.9 and written:
                head = f"{rng.choice(written)} [HEAD] "
                modes.append("script:duplicate-id")
            else:
                head = f"{'x' * 70} [HEAD] "  # an id too long to use: renamed
                modes.append("script:invalid-id")
            text = f"[CALL] {head}{body} [END]\n"
            items.append(text)
            calls.append(text)
    if rng.random() < 0.7:
        items.append("Final answer.")
    cancel_run_at = None
    if rng.random() < 0.08:
        cancel_run_at = rng.uniform(0, 2 * sc.sleep)
        modes.append("outside:cancel-run")
    n_calls = sum(1 for it in items if it.startswith("[CALL]"))
    cancel_calls = tuple(
        (k, rng.uniform(0, sc.sleep)) for k in range(n_calls) if rng.random() < 0.08)
    if cancel_calls:
        modes.append("outside:cancel-call")
    deadline = rng.choice(DEADLINES)
    return Plan(
        index=index, clock=clock, strategy=rng.choice(list(STRATEGIES)),
        ids=rng.choice(IDS), deadline=deadline,
        tool_timeout=rng.random() < 0.5,
        on_eos_pending="finish" if rng.random() < 0.2 else "trap",
        tpot_s=rng.choice(sc.tpots), items=tuple(items), modes=tuple(dict.fromkeys(modes)),
        cancel_run_at=cancel_run_at, cancel_calls=cancel_calls,
    )


# -- running one session -----------------------------------------------------------------------
@dataclass
class Outcome:
    """What one session did."""

    plan: Plan
    calls: int = 0
    lost: int = 0
    duplicated: int = 0
    hung: bool = False
    stuck: bool = False  # still running after release and cancellation
    crashed: str | None = None  # "ExcType: message" when Session.run raised
    cancel_swallowed: bool = False
    abandoned: int = 0  # calls the runtime abandoned (informative: not a failure)
    late: bool = False  # real time: past its bound in the batch, but not when re-run alone
    elapsed: float = 0.0

    @property
    def failures(self) -> list[str]:
        out = []
        if self.hung:
            out.append("hung")
        if self.crashed:
            out.append("crashed")
        if self.lost:
            out.append("lost")
        if self.duplicated:
            out.append("duplicated")
        if self.cancel_swallowed:
            out.append("cancel_swallowed")
        return out

    def signature(self) -> tuple[str, str]:
        """What tells one failure from another: the failure kinds and the exception (its
        numbers left out)."""
        return ",".join(self.failures), re.sub(r"\d+", "N", self.crashed or "")[:100]


_TOOL_MODE = re.compile(r'\b(act|act_t|act_sync)\(mode="(\w+)"|\bproc\(s=([\d.]+)')


def tool_kinds(items: tuple[str, ...]) -> frozenset[str]:
    """The tools' fault kinds a script uses (``async:hang``, ``sync:kbint``, ``proc:long``)."""
    kinds = set()
    for it in items:
        for m in _TOOL_MODE.finditer(it):
            if m.group(3) is not None:
                kinds.add("proc:long" if float(m.group(3)) >= 1 else "proc:short")
            else:
                kinds.add(f"{'sync' if m.group(1) == 'act_sync' else 'async'}:{m.group(2)}")
    return frozenset(kinds)


def _blocks(transcript: str) -> int:
    """Closed call blocks (well-formed or not) in ``transcript``; a block the run's end cut
    off is not a call."""
    p = Parser(transcript=True)
    return sum(1 for e in p.feed(transcript) + p.close()
               if isinstance(e, Call | MalformedCall) and e.raw.rstrip().endswith("[END]"))


async def run_session(plan: Plan) -> Outcome:
    """Run one planned session on the running loop (whose clock must be ``plan.clock``'s);
    never raises for what the session does."""
    loop = asyncio.get_running_loop()
    sc = _scale(plan.clock)
    out = Outcome(plan)
    engine = SimEngine(ScriptedPolicy(list(plan.items)), SimCosts(tpot_s=plan.tpot_s),
                       virtual_time=plan.clock == "virtual")
    session = Session(engine, tools_for(plan.clock), strategy=get_strategy(plan.strategy),
                      system="t", config=plan.config())
    control = RunControl()
    emitted: list[str] = []
    completed: Counter[str] = Counter()
    cancels = dict(plan.cancel_calls)

    def on_event(e: Any) -> None:
        if e.type == "call.emitted":
            delay = cancels.get(len(emitted))
            emitted.append(e.call_id)
            if delay is not None:
                loop.call_later(delay, control.cancel_call, e.call_id)
        elif e.type == "call.completed":
            completed[e.call_id] += 1

    release = _Release(asyncio.Event())
    ctx = contextvars.copy_context()
    ctx.run(_RELEASE.set, release)
    t0 = loop.time()
    task = loop.create_task(session.run("go", on_event=on_event, control=control), context=ctx)
    cancelled_at: list[float] = []

    def cancel_run() -> None:
        if not task.done():
            cancelled_at.append(loop.time())
            task.cancel()

    handle = loop.call_later(plan.cancel_run_at, cancel_run) if (
        plan.cancel_run_at is not None) else None
    try:
        await asyncio.wait({task}, timeout=plan.bound())
        out.elapsed = loop.time() - t0
        if not task.done():
            out.hung = True
            release.event.set()  # let the tools that ignore cancellation go
            await asyncio.wait({task}, timeout=sc.grace + sc.margin)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=sc.grace + sc.margin)
            out.stuck = not task.done()
    finally:
        release.event.set()
        if handle is not None:
            handle.cancel()
    out.calls = len(emitted)
    out.duplicated = sum(n - 1 for n in completed.values() if n > 1)
    if out.stuck:
        return out
    out.lost = len(set(emitted) - set(completed))
    if task.cancelled():
        if not cancelled_at and not out.hung:
            out.crashed = "CancelledError: the run was cancelled though nobody cancelled it"
        return out
    exc = task.exception()
    if exc is not None:
        if not (cancelled_at and isinstance(exc, asyncio.CancelledError)):
            out.crashed = f"{type(exc).__name__}: {_safe_str(exc)[:200]}"
        return out
    result = task.result()
    out.abandoned = int(result.counters.get("abandoned", 0))
    if cancelled_at:
        out.cancel_swallowed = True
    out.lost = max(out.lost, len(set(emitted) - {c.id for c in result.calls}))
    out.lost += max(0, _blocks(result.transcript) - len(result.calls))
    return out


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001
        return "<unprintable>"


# -- batches and leak measurement ----------------------------------------------------------------
class _Sink(io.TextIOBase):
    """Swallows what tools print."""

    def write(self, s: str) -> int:
        return len(s)

    def writable(self) -> bool:
        return True


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # pragma: no cover - not Linux
        return 0


def _children() -> int:
    """Child processes of this process (zombies included), from /proc."""
    me = os.getpid()
    n = 0
    try:
        names = os.listdir("/proc")
    except OSError:  # pragma: no cover
        return 0
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            n += 1
    return n


@dataclass
class Leaks:
    tasks: int = 0
    threads: int = 0
    processes: int = 0
    fds: int = 0

    def add(self, other: Leaks) -> None:
        self.tasks += other.tasks
        self.threads += other.threads
        self.processes += other.processes
        self.fds += other.fds


def _settle(measure: Callable[[], int], before: int, seconds: float) -> int:
    """What is left above ``before`` once ``seconds`` (real time) have passed at most."""
    end = time.monotonic() + seconds
    while True:
        now = measure()
        if now <= before or time.monotonic() >= end:
            return max(0, now - before)
        time.sleep(0.01)


def run_batch(plans: list[Plan], clock: Clock, *, concurrency: int = 8,
              settle_s: float = 2.0) -> tuple[list[Outcome], Leaks]:
    """Run ``plans`` (all on ``clock``) on a fresh loop, ``concurrency`` at a time; then
    measure what they left behind. A loop is driven by hand (not ``asyncio.run``): a task that
    ignores cancellation for good must not keep the benchmark from closing the loop."""
    before_threads, before_fds, before_procs = threading.active_count(), _fds(), _children()
    loop: asyncio.AbstractEventLoop = (
        VirtualTimeLoop() if clock == "virtual" else asyncio.new_event_loop())
    pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="faults-worker")
    loop.set_default_executor(pool)
    leaks = Leaks()
    outcomes: list[Outcome] = []

    async def main() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(plan: Plan) -> None:
            async with sem:
                outcomes.append(await run_session(plan))

        await asyncio.gather(*(one(p) for p in plans))
        # Let abandoned work (released tools, killed processes) finish.
        me = asyncio.current_task()
        for _ in range(20):
            await asyncio.sleep(0)
        left = [t for t in asyncio.all_tasks() if t is not me]
        if left:
            await asyncio.wait(left, timeout=_scale(clock).grace + _scale(clock).margin)
        leaks.tasks = sum(1 for t in asyncio.all_tasks() if t is not me and not t.done())
        # Killed processes are reaped through the loop: give that a moment (real time).
        end = time.monotonic() + settle_s
        while _children() > before_procs and time.monotonic() < end:
            await asyncio.sleep(0.01)

    sink = _Sink()
    # Tasks destroyed pending and abandoned calls are counted, not logged.
    quiet = [logging.getLogger(n) for n in ("asyncio", "asynclm.runtime")]
    levels = [log.level for log in quiet]
    for log in quiet:
        log.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            try:
                loop.run_until_complete(main())
            except BaseException as exc:  # noqa: BLE001 - escaped the loop: a harness failure
                outcomes.append(Outcome(plans[0], crashed=f"escaped the event loop: "
                                        f"{type(exc).__name__}: {_safe_str(exc)[:200]}"))
            finally:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    with contextlib.suppress(BaseException):
                        loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                pool.shutdown(wait=False, cancel_futures=True)
                loop.close()
            # Measured while tools' late output is still swallowed.
            leaks.threads = _settle(threading.active_count, before_threads, settle_s)
            leaks.processes = _settle(_children, before_procs, settle_s)
            gc.collect()  # transports of the closed loop, cycles holding pipes
            leaks.fds = _settle(_fds, before_fds, settle_s)
    finally:
        for log, lvl in zip(quiet, levels, strict=True):
            log.setLevel(lvl)
    return outcomes, leaks


# -- shrinking ----------------------------------------------------------------------------------
def rerun(plan: Plan) -> Outcome:
    """``plan`` alone on a fresh loop."""
    outcomes, _ = run_batch([plan], plan.clock, concurrency=1, settle_s=0.0)
    return outcomes[0]


def shrink(out: Outcome, *, budget: int = 40) -> Plan:
    """A smaller plan that still fails with ``out``'s signature: items removed one at a time,
    tool faults made plain ``ok`` one at a time, then the outside interventions dropped (at
    most ``budget`` re-runs)."""
    target = out.signature()
    plan = out.plan
    tries = 0

    def still(p: Plan) -> bool:
        nonlocal tries
        tries += 1
        return rerun(p).signature() == target

    if plan.clock == "real" and not ({"sync", "proc"} & {k.split(":")[0] for k in
                                                          tool_kinds(plan.items)}):
        virtual = replace(plan, clock="virtual", tpot_s=_scale("virtual").tpots[0])
        if still(virtual):  # the same failure in virtual time: shrink it there, exactly
            plan, budget = virtual, budget + 30

    changed = True
    while changed and tries < budget:
        changed = False
        for k in range(len(plan.items)):
            if tries >= budget:
                break
            cand = replace(plan, items=plan.items[:k] + plan.items[k + 1:])
            if still(cand):
                plan, changed = cand, True
                break
    for k, item in enumerate(plan.items):  # a fault that plays no part becomes a plain "ok"
        if tries >= budget:
            break
        plain = re.sub(r'mode="\w+"', 'mode="ok"', item)
        if plain != item:
            cand = replace(plan, items=plan.items[:k] + (plain,) + plan.items[k + 1:])
            if still(cand):
                plan = cand
    for simpler in (dict(cancel_run_at=None), dict(cancel_calls=())):
        if tries >= budget:
            break
        cand = replace(plan, **simpler)
        if cand != plan and still(cand):
            plan = cand
    return plan


def _repro(plan: Plan) -> str:
    cfg = plan.config()
    engine = "SimEngine(ScriptedPolicy(script), SimCosts(tpot_s={}){})".format(
        plan.tpot_s, "" if plan.clock == "virtual" else ", virtual_time=False")
    runner = "run_virtual" if plan.clock == "virtual" else "asyncio.run"
    lines = [
        f"script = {list(plan.items)!r}",
        f"config = SessionConfig(deadline_s={cfg.deadline_s!r}, ids={cfg.ids!r}, "
        f"tool_timeout_s={cfg.tool_timeout_s!r}, on_eos_pending={cfg.on_eos_pending!r}, "
        f"max_tokens={cfg.max_tokens})",
        f"session = Session({engine}, tools_for({plan.clock!r}), "
        f"strategy=strategy({plan.strategy!r}), system='t', config=config)",
        f"{runner}(session.run('go'))",
    ]
    if plan.cancel_run_at is not None:
        lines.append(f"# the run is cancelled from outside after {plan.cancel_run_at:.3f} s")
    if plan.cancel_calls:
        lines.append(f"# RunControl.cancel_call on the n-th emitted call after a delay: "
                     f"{[(k, round(d, 3)) for k, d in plan.cancel_calls]}")
    return "\n".join(lines)


# -- the benchmark ------------------------------------------------------------------------------
def _distinct_failures(
    outcomes: list[Outcome], *, shrink_failures: bool, max_repros: int,
    progress: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """Failures grouped by kind and exception, with where they happened and minimal
    reproductions: the shortest failing scripts are shrunk first; a failure whose script
    contains every tool fault of a reproduction already found is taken for the same cause."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        if o.failures:
            groups[o.signature()].append(o)
    result = []
    shrunk = 0
    for (kinds, exc), members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        entry: dict[str, Any] = {"failure": kinds, "exception": exc or None,
                                 "sessions": len(members),
                                 "session_indices": sorted(m.plan.index for m in members)[:50]}
        for attr in ("clock", "strategy", "ids", "deadline"):
            entry[f"by_{attr}"] = dict(Counter(getattr(m.plan, attr) for m in members))
        repros: list[dict[str, Any]] = []
        tried = 0
        for m in sorted(members, key=lambda m: (m.plan.clock != "virtual", len(m.plan.items))):
            if not shrink_failures or shrunk >= max_repros or tried >= 4:
                break
            have = tool_kinds(m.plan.items)
            if any(set(r["tool_faults"]) <= have for r in repros):
                continue
            tried += 1
            shrunk += 1
            small = shrink(m, budget=40 if m.plan.clock == "virtual" else 8)
            small_kinds = sorted(tool_kinds(small.items))
            if any(r["tool_faults"] == small_kinds for r in repros):
                continue
            same = sum(1 for o in members if set(small_kinds) <= tool_kinds(o.plan.items))
            repros.append({"session": m.plan.index, "clock": small.clock,
                           "strategy": small.strategy, "ids": small.ids,
                           "deadline": small.deadline, "tool_faults": small_kinds,
                           "sessions_with_these_faults": same, "code": _repro(small)})
            if progress is not None:
                progress(f"shrunk {kinds} {exc[:40]!r} (session {m.plan.index}): "
                         f"{len(m.plan.items)} → {len(small.items)} items {small_kinds}")
        entry["repros"] = repros
        result.append(entry)
    return result


def _batches(plans: list[Plan], size: int) -> Iterator[tuple[Clock, list[Plan]]]:
    for clock in ("virtual", "real"):
        mine = [p for p in plans if p.clock == clock]
        for i in range(0, len(mine), size):
            yield clock, mine[i:i + size]


def bench_faults(
    sessions: int = 10_000, seed: int = 0, *, batch: int = 100, real_share: float = 0.2,
    shrink_failures: bool = True, max_repros: int = 12,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``sessions`` randomized sessions and count what went wrong (see the module doc)."""
    rng = random.Random(seed)
    plans = [make_plan(i, rng, real_share=real_share) for i in range(sessions)]
    t0 = time.perf_counter()
    outcomes: list[Outcome] = []
    leaks = Leaks()
    leak_batches: list[dict[str, Any]] = []
    done = 0
    for clock, group in _batches(plans, batch):
        outs, lk = run_batch(group, clock)
        outcomes += outs
        leaks.add(lk)
        if lk.tasks or lk.threads or lk.processes or lk.fds:
            leak_batches.append({"clock": clock, "first_session": group[0].index,
                                 "sessions": len(group), **asdict(lk)})
        done += len(group)
        if progress is not None:
            bad = sum(1 for o in outcomes if o.failures)
            progress(f"{done}/{sessions} sessions, {bad} with failures")
    # A real-time run past its bound is re-run alone once: one that then returns in time was
    # late (CPU shared with the rest of the batch and the machine), not hung; counted apart.
    for i, o in enumerate(outcomes):
        if o.hung and o.plan.clock == "real" and not o.stuck and not rerun(o.plan).hung:
            outcomes[i] = replace(o, hung=False, late=True)
    wall = time.perf_counter() - t0

    totals: dict[str, int] = {
        "sessions": len(outcomes), "calls": sum(o.calls for o in outcomes),
        "lost": sum(o.lost for o in outcomes),
        "duplicated": sum(o.duplicated for o in outcomes),
        "hung": sum(o.hung for o in outcomes),
        "stuck": sum(o.stuck for o in outcomes),
        "late_not_reproduced": sum(o.late for o in outcomes),
        "crashed": sum(1 for o in outcomes if o.crashed),
        "cancel_swallowed": sum(o.cancel_swallowed for o in outcomes),
        "abandoned_calls": sum(o.abandoned for o in outcomes),
        "leaked_tasks": leaks.tasks, "leaked_threads": leaks.threads,
        "leaked_processes": leaks.processes, "leaked_fds": leaks.fds,
    }
    by_clock = {c: sum(1 for o in outcomes if o.plan.clock == c) for c in ("virtual", "real")}
    # Counts per fault kind: sessions whose script has it, and those of them that failed.
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    per_setting: dict[str, Counter[str]] = defaultdict(Counter)
    for o in outcomes:
        fails = o.failures
        for kind in o.plan.modes:
            per_kind[kind]["sessions"] += 1
            for f in fails:
                per_kind[kind][f] += 1
        for key in (f"strategy:{o.plan.strategy}", f"ids:{o.plan.ids}",
                    f"deadline:{o.plan.deadline}", f"clock:{o.plan.clock}"):
            per_setting[key]["sessions"] += 1
            for f in fails:
                per_setting[key][f] += 1
    failures = _distinct_failures(outcomes, shrink_failures=shrink_failures,
                                  max_repros=max_repros, progress=progress)
    return {
        "benchmark": "faults",
        "seed": seed,
        "sessions_by_clock": by_clock,
        "strategies": list(STRATEGIES),
        "grace_s": {c: _scale(c).grace for c in ("virtual", "real")},
        "runtime_has_cancel_grace": _HAS_GRACE,
        "margin_s": {c: _scale(c).margin for c in ("virtual", "real")},
        "totals": totals,
        "all_zero": all(totals[k] == 0 for k in _TARGETS),
        "wall_s": round(wall, 2),
        "per_fault_kind": {k: dict(v) for k, v in sorted(per_kind.items())},
        "per_setting": {k: dict(v) for k, v in sorted(per_setting.items())},
        "late_sessions": [o.plan.index for o in outcomes if o.late],
        "leak_batches": leak_batches,
        "failures": failures,
    }


_TARGETS = ("lost", "duplicated", "hung", "stuck", "crashed", "cancel_swallowed",
            "leaked_tasks", "leaked_threads", "leaked_processes", "leaked_fds")
_FAIL_KINDS = ("hung", "crashed", "lost", "duplicated", "cancel_swallowed")


def markdown(result: dict[str, Any], command: str | None = None) -> str:
    t = result["totals"]
    bc = result["sessions_by_clock"]
    lines = [
        "# Fault injection at volume (simulator: virtual and real time)", "",
    ]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"{t['sessions']} randomized sessions ({bc['virtual']} in virtual time, {bc['real']} in"
        f" real time; seed {result['seed']}) across the strategies "
        f"{', '.join(result['strategies'])} × ids assign/strict × deadline none/short/long, "
        f"{t['calls']} calls; tools that raise (BaseException subclasses included), exit, hang, "
        "ignore or swallow cancellation, return huge/nested/cyclic/unserialisable values, "
        "print, start threads and processes; runs cancelled from outside, calls cancelled "
        "through RunControl. Grace for cancelled tools (`cancel_grace_s`): "
        f"{result['grace_s']['virtual']:g} s virtual, {result['grace_s']['real']:g} s real; "
        "a run counts as hung after its deadline (without one: its worst case under the "
        f"per-tool timeouts) + grace + {result['margin_s']['virtual']:g} s virtual, "
        f"{result['margin_s']['real']:g} s real. Wall time {result['wall_s']} s.", "",
        "| measure | value | target |", "|---|---|---|",
        f"| sessions | {t['sessions']} | — |", f"| calls | {t['calls']} | — |",
        f"| calls abandoned by the runtime (ignored cancellation past the grace) | "
        f"{t['abandoned_calls']} | — |",
        "| real-time runs past their bound in the batch that returned in time when re-run "
        f"alone (CPU load) | {t['late_not_reproduced']} {result['late_sessions'][:20]} | — |",
    ]
    for k in _TARGETS:
        lines.append(f"| {k.replace('_', ' ')} | {t[k]} | 0 |")
    lines.append(f"| wall time | {result['wall_s']} s | — |")
    lines += ["", "## Failures by fault kind in the script", "",
              "| fault kind | sessions | " + " | ".join(_FAIL_KINDS) + " |",
              "|---|---|" + "---|" * len(_FAIL_KINDS)]
    for kind, c in result["per_fault_kind"].items():
        lines.append(f"| {kind} | {c.get('sessions', 0)} | "
                     + " | ".join(str(c.get(f, 0)) for f in _FAIL_KINDS) + " |")
    lines += ["", "## Failures by setting", "",
              "| setting | sessions | " + " | ".join(_FAIL_KINDS) + " |",
              "|---|---|" + "---|" * len(_FAIL_KINDS)]
    for kind, c in result["per_setting"].items():
        lines.append(f"| {kind} | {c.get('sessions', 0)} | "
                     + " | ".join(str(c.get(f, 0)) for f in _FAIL_KINDS) + " |")
    if result["leak_batches"]:
        lines += ["", "## Batches that leaked", "", "| clock | first session | sessions | "
                  "tasks | threads | processes | fds |", "|---|---|---|---|---|---|---|"]
        for b in result["leak_batches"]:
            lines.append(f"| {b['clock']} | {b['first_session']} | {b['sessions']} | "
                         f"{b['tasks']} | {b['threads']} | {b['processes']} | {b['fds']} |")
    if result["failures"]:
        lines += ["", "## Distinct failures (minimal reproductions: `tools_for` and the tools "
                  "are in `asynclm.bench.faults`, `strategy` in `asynclm.bench.baselines`)", ""]
        for i, f in enumerate(result["failures"], 1):
            exc = f" `{f['exception']}`" if f["exception"] else ""
            lines.append(f"{i}. **{f['failure']}**{exc}: {f['sessions']} sessions; "
                         f"clock {f['by_clock']}, strategy {f['by_strategy']}, ids "
                         f"{f['by_ids']}, deadline {f['by_deadline']}")
            for r in f["repros"]:
                lines += ["", f"   Session {r['session']} shrunk ({r['clock']} time; tool faults "
                          f"{', '.join(r['tool_faults']) or 'none'}; "
                          f"{r['sessions_with_these_faults']} of these sessions have them):",
                          "", "   ```python"]
                lines += [f"   {ln}" for ln in r["code"].splitlines()]
                lines += ["   ```"]
            lines.append("")
    else:
        lines += ["", "No failures."]
    return "\n".join(lines) + "\n"
