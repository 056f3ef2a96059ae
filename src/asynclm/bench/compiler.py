"""An LLMCompiler-style strategy over the same engines, tools and executor.

A *planner* writes numbered tasks, ``1. search(q="x")``, whose arguments may reference earlier
tasks' results as ``$1`` or ``$1.path``, and ends the plan with ``join()``. Each task is
dispatched the moment its line is complete (streamed dispatch); the executor starts it when its
inputs resolve (futures). After ``join()`` the runtime waits for every task, shows the results
to a *joiner* (``Action: Finish(answer)`` or ``Action: Replan(reason)``), and on a replan the
planner writes more tasks, numbered on, in the same conversation.

Free of LLMCompiler's known defects by construction (each has a test):
- ``$10`` is id ``"10"``: references are parsed by the call-body grammar, not by string search;
- a ``$1`` inside a tool's output is never substituted: results are inserted as values, and
  observations are escaped, untrusted payloads that no parser reads again;
- a raising tool does not hang the plan: every task reaches exactly one outcome, and the
  dependents of a failed task fail at once.

:class:`PlanParser` is sans-I/O; :class:`CompilerSession` is the decode loop.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from asynclm.engines.base import ChatMessage, Engine
from asynclm.protocol import DEFAULT_MARKERS, BodyError, Markers, parse_body
from asynclm.runtime import otel
from asynclm.runtime.clock import loop_clock
from asynclm.runtime.config import DEFAULT_CANCEL_GRACE_S, DEFAULT_DEADLINE_S
from asynclm.runtime.executor import Executor
from asynclm.runtime.interrupts import InterruptManager, Segment, tokenize_segments
from asynclm.runtime.records import CallRecord, SessionResult, StopReason
from asynclm.tools import Tool, Toolbox
from asynclm.trace import Trace

PLANNER_RULES = """\
You answer the user's question by writing a plan of function calls that a system runs in \
parallel for you.
Write one task per line: a number, a period, then one call, as in
1. function_name(arg="value", other=2)
Rules:
- Number the tasks 1, 2, 3, ... in order.
- A task may use the result of an earlier task: write $N for the whole result of task N, or \
$N.key (or $N.0 for an item of a list) for a part of it. Never copy or guess a result.
- Tasks that do not depend on each other run at the same time: write every task you need now.
- End the plan with a line `N. join()` (the next number).
- Only call the functions listed below.

Example:
User: Book the cheapest flight from Paris to Rome.
1. search_flights(origin="Paris", dest="Rome")
2. book_flight(flight_id=$1.cheapest.id)
3. join()

Functions:
"""

JOINER_RULES = """\
Now decide. If the results answer the question, write
Action: Finish(<your answer to the user>)
If a task failed and a new plan can fix it, write
Action: Replan(<what to do differently>)
"""

_TASK_RE = re.compile(r"^\s*(?:Task\s*)?(\d{1,6})\s*[.:)]\s*(.*?)\s*$")
_JOIN_RE = re.compile(r"^join\s*\(\s*\)\s*(?:<END_OF_PLAN>)?\s*$")
_ACTION_RE = re.compile(r"Action:\s*(Finish|Replan)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True, slots=True)
class PlanTask:
    """A numbered task: ``idx`` is its number as written (the id its results go by);
    ``raw`` the call text after the number."""

    idx: str
    fn: str
    args: dict[str, Any]
    pos: tuple[Any, ...]
    raw: str


@dataclass(frozen=True, slots=True)
class PlanMalformed:
    """A numbered line whose call does not parse; it becomes an error outcome."""

    idx: str
    raw: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlanJoin:
    """``join()``: the plan is complete."""

    raw: str


PlanItem = PlanTask | PlanMalformed | PlanJoin


class PlanParser:
    """Incremental, sans-I/O: ``feed(text)`` returns the items of every line completed so far;
    ``close()`` flushes the last line. Lines that are not numbered tasks (thoughts) are
    ignored. Any split of the same text yields the same items."""

    def __init__(self, *, max_line_chars: int = 8192) -> None:
        self._buf = ""
        self._max = max_line_chars

    def feed(self, text: str) -> list[PlanItem]:
        self._buf += text
        out: list[PlanItem] = []
        while True:
            nl = self._buf.find("\n")
            if nl < 0:
                break
            line, self._buf = self._buf[:nl], self._buf[nl + 1:]
            out.extend(self._line(line))
        if len(self._buf) > self._max:  # a runaway line: judge it now, never buffer forever
            line, self._buf = self._buf, ""
            out.extend(self._line(line))
        return out

    def close(self) -> list[PlanItem]:
        line, self._buf = self._buf, ""
        return self._line(line) if line.strip() else []

    @staticmethod
    def _line(line: str) -> list[PlanItem]:
        m = _TASK_RE.match(line)
        body = m.group(2) if m else line.strip()
        if _JOIN_RE.match(body):
            return [PlanJoin(line)]
        if m is None:
            return []
        idx = str(int(m.group(1)))  # "01" and "1" are the same task number
        try:
            parsed = parse_body(body)
        except BodyError as exc:
            return [PlanMalformed(idx, line, str(exc))]
        return [PlanTask(idx, parsed.fn, parsed.args, parsed.pos, body)]


def parse_action(text: str) -> tuple[Literal["finish", "replan", "none"], str]:
    """The joiner's decision: ``("finish", answer)``, ``("replan", reason)``, or ``("none",
    text)`` when no action was written (then the text is taken as the answer)."""
    actions = list(_ACTION_RE.finditer(text))
    m = actions[-1] if actions else None  # the last action written counts
    if m is None:
        return "none", text.strip()
    return ("finish" if m.group(1) == "Finish" else "replan"), m.group(2).strip()


@dataclass(frozen=True, slots=True)
class CompilerConfig:
    """``max_replans``: planning rounds after the first. ``joiner_request``: ``new`` sends the
    joiner as a new request over the whole context (LLMCompiler's separate joiner call: time to
    first token again, prefix cache reused), ``append`` extends the live context.
    ``deadline_s`` (default 600 s, ``None``: none) and ``cancel_grace_s`` bound the run as in
    :class:`~asynclm.runtime.config.SessionConfig` (see ``SessionResult.abandoned``)."""

    max_plan_tokens: int = 768
    max_join_tokens: int = 256
    max_replans: int = 1
    deadline_s: float | None = DEFAULT_DEADLINE_S
    tool_timeout_s: float | None = None
    joiner_request: Literal["new", "append"] = "new"
    cancel_grace_s: float = DEFAULT_CANCEL_GRACE_S


def planner_prompt(tools: Toolbox) -> str:
    """The planner's system prompt: the rules, one example, and the tools as JSON."""
    return PLANNER_RULES + tools.describe(estimated=False)


class CompilerSession:
    """Plan-and-execute over one engine. :meth:`run` returns a :class:`SessionResult` with
    ``strategy="llmcompiler"``; ``counters`` holds ``rounds`` and ``replans``."""

    def __init__(
        self,
        engine: Engine,
        tools: Toolbox | Iterable[Tool | Callable[..., Any]] = (),
        *,
        system: str | None = None,
        config: CompilerConfig | None = None,
        markers: Markers = DEFAULT_MARKERS,
    ) -> None:
        self.engine = engine
        self.tools = tools if isinstance(tools, Toolbox) else Toolbox(list(tools))
        self.system = system if system is not None else planner_prompt(self.tools)
        self.config = config or CompilerConfig()
        self.markers = markers

    def messages(self, prompt: str | Sequence[ChatMessage]) -> list[ChatMessage]:
        if isinstance(prompt, str):
            return [ChatMessage("system", self.system), ChatMessage("user", prompt)]
        return list(prompt)

    async def run(self, prompt: str | Sequence[ChatMessage]) -> SessionResult:
        """Plan, execute, join (and replan) to an answer. Tool failures never raise."""
        return await _CompilerRun(self, self.messages(prompt)).execute()


@dataclass
class _Decoded:
    text: str = ""
    stop: Literal["eos", "join", "max_tokens"] = "eos"
    items: list[PlanItem] = field(default_factory=list)


class _CompilerRun:
    def __init__(self, s: CompilerSession, messages: list[ChatMessage]) -> None:
        self.s = s
        self.cfg = s.config
        self.engine = s.engine
        self.messages = messages
        self.now = loop_clock(asyncio.get_running_loop())  # every timestamp of the run
        self.trace = Trace(meta={"strategy": "llmcompiler"})
        self.records: dict[str, CallRecord] = {}
        self.interrupts = InterruptManager(markers=s.markers, echo="always")
        self.ctx: list[int] = []
        self.prompt_len = 0
        self.n_generated = 0
        self.n_injected = 0
        self.first_token_at: float | None = None
        self.counters = {"rounds": 0, "replans": 0, "malformed": 0, "duplicates": 0}
        self.stop: StopReason = "eos"
        self.submitted: list[str] = []
        self.executor: Executor

    def _on_end(self, rec: CallRecord) -> None:
        self.records[rec.id] = rec
        if rec.started_at is not None:
            self.trace.add_span("tool", rec.fn, rec.started_at, rec.ended_at, call_id=rec.id,
                                outcome=rec.status)

    async def execute(self) -> SessionResult:
        t0 = self.now()
        answer = ""
        try:
            async with asyncio.TaskGroup() as group:
                self.executor = Executor(
                    self.s.tools, group, on_start=lambda i, f: None, on_end=self._on_end,
                    default_timeout=self.cfg.tool_timeout_s, tracer=otel.tracer(),
                    cancel_grace_s=self.cfg.cancel_grace_s,
                )
                try:
                    async with asyncio.timeout(self.cfg.deadline_s) as scope:
                        answer = await self._rounds()
                except TimeoutError:
                    if not scope.expired():
                        raise
                    self.stop = "deadline"
                finally:
                    self.executor.cancel_all("session ended")
        except BaseExceptionGroup as group_exc:
            # unwrap a lone exception; its context is the group it came in
            raise group_exc.exceptions[0] if len(group_exc.exceptions) == 1 else group_exc  # noqa: B904
        t1 = self.now()
        abandoned = self.executor.abandoned()
        if abandoned:
            self.counters["abandoned"] = len(abandoned)
        self.trace.set_bounds(t0, t1)
        transcript = self.engine.detokenize(self.ctx[self.prompt_len:]).decode("utf-8", "replace")
        return SessionResult(
            text=answer, transcript=transcript,
            calls=tuple(sorted(self.records.values(), key=lambda r: r.emitted_at)),
            trace=self.trace, strategy="llmcompiler", stop_reason=self.stop,
            latency_s=t1 - t0, n_generated=self.n_generated, n_injected=self.n_injected,
            first_token_s=None if self.first_token_at is None else self.first_token_at - t0,
            counters=dict(self.counters), abandoned=abandoned,
        )

    async def _rounds(self) -> str:
        t = self.now()
        self.ctx = self.engine.tokenize_chat(self.messages)
        cached = await self.engine.prefill(self.ctx)
        self.trace.add_span("prefill", "prefill", t, self.now(), tokens=len(self.ctx),
                            cached=cached)
        self.prompt_len = len(self.ctx)
        for round_no in range(self.cfg.max_replans + 1):
            self.counters["rounds"] += 1
            start = len(self.submitted)
            plan = await self._decode(self.cfg.max_plan_tokens, plan=True)
            if plan.stop == "max_tokens":
                self.stop = "max_tokens"
            ids = self.submitted[start:]
            t = self.now()
            await self.executor.wait_all()
            if self.now() > t:
                self.trace.add_span("trap", "join", t, self.now())
            batch = [self.records[i] for i in ids if i in self.records]
            segments = [Segment("\n", True), *self.interrupts.render(batch),
                        Segment(JOINER_RULES, True)]
            await self._add(segments, new_request=self.cfg.joiner_request == "new")
            self.n_injected += len(batch)
            joined = await self._decode(self.cfg.max_join_tokens, plan=False)
            kind, text = parse_action(joined.text)
            if kind != "replan":
                return text
            if round_no == self.cfg.max_replans:  # a replan asked for, none left: no answer
                self.counters["replan_limit"] = 1
                break
            self.counters["replans"] += 1
            await self._add([Segment("\nReplan. Continue the numbering.\n", True)],
                            new_request=False)
        return ""

    async def _add(self, segments: list[Segment], *, new_request: bool) -> None:
        """Append runtime text: trusted markup with special tokens on, untrusted payloads
        (observations, already escaped) with special tokens off."""
        tokens = tokenize_segments(self.engine.tokenize, segments)
        t = self.now()
        if new_request:
            await self.engine.prefill(self.ctx + tokens, reuse_prefix=True)
            kind = "reprefill"
        else:
            await self.engine.append(tokens)
            kind = "interrupt"
        self.ctx.extend(tokens)
        self.trace.add_span(kind, "observations", t, self.now(), tokens=len(tokens))

    async def _decode(self, max_tokens: int, *, plan: bool) -> _Decoded:
        out = _Decoded()
        parser = PlanParser()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        parts: list[str] = []
        for _ in range(max_tokens):
            t = self.now()
            tok = await self.engine.step()
            t1 = self.now()
            self.n_generated += 1
            self.trace.add_span("decode", "plan" if plan else "join", t, t1, tokens=1)
            if self.first_token_at is None:
                self.first_token_at = t1
            self.ctx.append(tok)
            if self.engine.is_eos(tok):
                out.stop = "eos"
                break
            text = decoder.decode(self.engine.detokenize([tok]))
            parts.append(text)
            if plan and self._dispatch(parser.feed(text)):
                out.stop = "join"
                break
        else:
            out.stop = "max_tokens"
        if plan and out.stop != "join":
            self._dispatch(parser.close())
        out.text = "".join(parts)
        return out

    def _dispatch(self, items: list[PlanItem]) -> bool:
        """Submit each task at once (streamed dispatch). True at ``join()``."""
        for item in items:
            if isinstance(item, PlanJoin):
                return True
            idx, error = item.idx, None
            if idx in self.executor:
                self.counters["duplicates"] += 1
                error = f"task number {idx} is already used"
                k = 2
                while f"{item.idx}~{k}" in self.executor:
                    k += 1
                idx = f"{item.idx}~{k}"
            if isinstance(item, PlanMalformed):
                self.counters["malformed"] += 1
                self.executor.submit(idx, "", {}, raw=item.raw,
                                     error=f"malformed task: {item.reason}")
            elif error is not None:
                self.executor.submit(idx, item.fn, item.args, pos=item.pos, raw=item.raw,
                                     error=error)
            else:
                self.trace.add_instant("call.emitted", self.now(), call_id=idx, fn=item.fn)
                self.executor.submit(idx, item.fn, item.args, pos=item.pos, raw=item.raw)
            self.submitted.append(idx)
        return False
