"""The dialect seam (``asynclm.protocol.dialect``), CML as its first implementation, and the one
id grammar (``asynclm.protocol.ids``).

* CML renders exactly what the pre-dialect functions rendered (golden strings).
* A second dialect with other markers runs whole simulator sessions: the runtime and the
  simulator's policies hold no CML string of their own.
* Every valid id can be referenced; ``a:b`` and ``a.b`` are not ids.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import asynclm
from asynclm.agents import AgentDirectory
from asynclm.prompt import system_prompt
from asynclm.protocol import (
    CALL_ID_RE,
    CML,
    DEFAULT_MARKERS,
    Call,
    CmlDialect,
    Delivery,
    Dialect,
    Interrupt,
    Markers,
    Parser,
    Ref,
    Segment,
    escape_payload,
    format_ref,
    is_call_id,
    parse_body,
    render_call,
    render_trap,
)
from asynclm.protocol.body import parse_ref
from asynclm.runtime import RunControl, Session, SessionConfig, run_virtual
from asynclm.runtime.futures import split_string_refs
from asynclm.runtime.interrupts import InterruptManager
from asynclm.runtime.messages import Message
from asynclm.runtime.records import CallRecord
from asynclm.testing.sim import (
    OraclePolicy,
    ScriptedPolicy,
    SimCall,
    SimCosts,
    SimEngine,
    SimTask,
    task_toolbox,
)
from asynclm.tools import Toolbox, tool

# --------------------------------------------------------------------------------------------
# CML: golden strings


def test_cml_is_a_dialect() -> None:
    assert isinstance(CML, Dialect) and CML.name == "cml" and CML.markers == DEFAULT_MARKERS
    assert CmlDialect() == CML and hash(CmlDialect()) == hash(CML)


def test_cml_renders_calls_and_traps() -> None:
    assert CML.render_call("f", {"x": 1}, "c1") == "[CALL] c1 [HEAD] f(x=1) [END]"
    assert CML.render_call("f", {}, None, pos=(1, "a")) == '[CALL] f(1, "a") [END]'
    assert CML.render_call("g", {"s": "[END]"}, "c2") == render_call("g", {"s": "[END]"}, "c2")
    assert CML.render_trap() == "[TRAP][END]" == render_trap()
    assert CML.close_call() == " [END]"


def test_cml_renders_interrupts() -> None:
    segs = CML.render_interrupt([Delivery("c1", '{"a": 1}'), Delivery("user", "hi [END] x")])
    assert segs == [
        Segment("[INTR] c1 [HEAD]", True), Segment(' {"a": 1}', False), Segment(" [END]\n", True),
        Segment("[INTR] user [HEAD]", True), Segment(" " + escape_payload("hi [END] x"), False),
        Segment(" [END]\n", True),
    ]
    assert "[END]" not in segs[4].text
    assert CML.interrupt_markup("c9") == ("[INTR] c9 [HEAD]", " [END]\n")
    text = "".join(s.text for s in segs)
    got = [e for e in CML.parser(transcript=True).feed(text) if isinstance(e, Interrupt)]
    assert [(e.id, e.payload) for e in got] == [("c1", '{"a": 1}'), ("user", segs[4].text[1:])]


def test_cml_payload_wording() -> None:
    assert CML.echo("f(x=1)", "42") == "f(x=1) -> 42"
    assert CML.echo("f(x=1)", "42", same_as="c1") == "f(x=1) -> same call as c1, same result: 42"
    assert CML.error("error", "boom") == "error: boom"
    assert CML.error("error", "") == "error: "
    assert CML.error("timeout", None) == "timeout"
    assert CML.message("user", "stop") == "message from user: stop"


def test_cml_call_body_and_forgeries() -> None:
    assert CML.call_body("[CALL] c1 [HEAD] f(x=1) [END]") == "f(x=1)"
    assert CML.call_body("[CALL] f(x=1) [END] ") == "f(x=1)"
    assert CML.call_body("[CALL] c1 [HEAD] f(x=") == "f(x="
    assert CML.forged_markers == ("[intr", "[result", "<tool_response")
    assert CML.count_forged("a [INTR] b [Result] <TOOL_RESPONSE> [intr") == 4
    assert CML.special_tokens == ("[CALL]", "[INTR]", "[TRAP]", "[HEAD]", "[END]")


def _rec(**kw: Any) -> CallRecord:
    base: dict[str, Any] = {"id": "c1", "fn": "f", "args": {"x": 1},
                            "raw": "[CALL] c1 [HEAD] f(x=1) [END]", "status": "ok", "value": 42}
    return CallRecord(**{**base, **kw})


@pytest.mark.parametrize(("rec", "echo", "payload"), [
    (_rec(), "auto", "42"),
    (_rec(), "always", "f(x=1) -> 42"),
    (_rec(id_assigned=True), "auto", "f(x=1) -> 42"),
    (_rec(id_assigned=True), "never", "42"),
    (_rec(status="error", value=None, error="boom"), "auto", "f(x=1) -> error: boom"),
    (_rec(status="timeout", value=None), "auto", "f(x=1) -> timeout"),
    (_rec(status="cancelled", value=None, error="stop"), "never", "cancelled: stop"),
    (_rec(repeat_of="c0"), "never", "f(x=1) -> same call as c0, same result: 42"),
])
def test_interrupt_manager_renders_as_before(rec: CallRecord, echo: Any, payload: str) -> None:
    im = InterruptManager(echo=echo)
    assert im.dialect == CML
    assert im.render([rec]) == [
        Segment("[INTR] c1 [HEAD]", True), Segment(" " + payload, False),
        Segment(" [END]\n", True)]


def test_interrupt_manager_renders_messages_as_before() -> None:
    im = InterruptManager()
    assert im.render([Message("boss", "hurry")]) == [
        Segment("[INTR] boss [HEAD]", True), Segment(" message from boss: hurry", False),
        Segment(" [END]\n", True)]
    assert im.markup("c3") == ("[INTR] c3 [HEAD]", " [END]\n")
    assert im.body_of("[CALL] c1 [HEAD] f(x=1) [END]") == "f(x=1)"


def test_other_markers_still_build_a_cml_dialect() -> None:
    m = Markers(call="<c>", interrupt="<i>", trap="<t>", head="<h>", end="<e>")
    im = InterruptManager(markers=m)
    assert im.dialect == CmlDialect(m)
    assert im.render([_rec()]) == [Segment("<i> c1 <h>", True), Segment(" 42", False),
                                   Segment(" <e>\n", True)]


@tool
def lookup(q: str) -> str:
    """Look something up."""
    return q


def test_system_prompt_is_the_dialects() -> None:
    box = Toolbox([lookup])
    text = system_prompt(box)
    assert text == CML.system_prompt(box.describe(estimated=True))
    assert text.startswith("You can call functions. A call runs in the background")
    assert "{call} a1" not in text and "[CALL] a1 [HEAD] function_name(arg=" in text
    assert "Results arrive as [INTR] a1 [HEAD] <result> [END]. Only the system" in text
    fut = system_prompt(box, futures=True, extra="X")
    assert fut == CML.system_prompt(box.describe(estimated=True), futures=True) + "\n\nX"
    assert "[CALL] a1 [HEAD] add_to_cart(product_id=$p1.best.id) [END]" in fut
    assert Session(SimEngine(ScriptedPolicy([])), box).system == text


# --------------------------------------------------------------------------------------------
# a second dialect: the runtime and the simulator speak whatever the session's dialect says

ANGLE = Markers(call="<<CALL>>", interrupt="<<INTR>>", trap="<<TRAP>>", head="<<HEAD>>",
                end="<<END>>", forbidden=("<<INTR", "<<RESULT"))
CML_STRINGS = ("[CALL]", "[INTR]", "[HEAD]", "[END]", "[TRAP]")


class AngleDialect:
    """Not a CmlDialect: a separate implementation of the interface (CML's grammar with other
    markers, other payload wording), recording which parts the runtime used."""

    name = "angle"

    def __init__(self) -> None:
        self._cml = CmlDialect(ANGLE)
        self.markers = ANGLE  # what a marker-based dialect exposes for older callers
        self.used: dict[str, int] = {}

    def _use(self, what: str) -> None:
        self.used[what] = self.used.get(what, 0) + 1

    def parser(self, *, transcript: bool = False) -> Parser:
        self._use(f"parser(transcript={transcript})")
        return self._cml.parser(transcript=transcript)

    @property
    def forged_markers(self) -> tuple[str, ...]:
        return self._cml.forged_markers

    def count_forged(self, sampled: str) -> int:
        return self._cml.count_forged(sampled)

    def close_call(self) -> str:
        self._use("close_call")
        return self._cml.close_call()

    def call_body(self, raw: str) -> str:
        return self._cml.call_body(raw)

    def render_call(self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
                    pos: Sequence[Any] = ()) -> str:
        return self._cml.render_call(fn, args, id, pos=pos)

    def render_trap(self) -> str:
        return self._cml.render_trap()

    def partial(self, result: str) -> str:
        return f"(partial) {result}"

    def render_interrupt(self, items: Sequence[Delivery]) -> list[Segment]:
        self._use("render_interrupt")
        return self._cml.render_interrupt(items)

    def interrupt_markup(self, head: str) -> tuple[str, str]:
        return self._cml.interrupt_markup(head)

    def escape_payload(self, text: str) -> str:
        return self._cml.escape_payload(text)

    def echo(self, body: str, result: str, *, same_as: str | None = None) -> str:
        return f"{body} => {result}" if same_as is None else f"{body} => ({same_as}) {result}"

    def error(self, status: str, text: str | None) -> str:
        return f"<{status}> {text or ''}".rstrip()

    def message(self, sender: str, text: str) -> str:
        return f"{sender} says {text}"

    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        return f"Call with {ANGLE.call} id {ANGLE.head} f() {ANGLE.end}.\n{tools}"

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self._cml.special_tokens


def test_angle_dialect_is_a_dialect() -> None:
    assert isinstance(AngleDialect(), Dialect)


def _task() -> SimTask:
    return SimTask((
        SimCall("a1", "fetch", {"key": "x"}, 0.3),
        SimCall("a2", "fetch", {"key": "y"}, 0.1),
        SimCall("a3", "combine", {"v": Ref("a1")}, 0.1, deps=("a1",)),
    ), answer="Done.")


@pytest.mark.parametrize("strategy", ["sync", "async", "async-lazy"])
def test_a_whole_session_in_another_dialect(strategy: str) -> None:
    task, dialect = _task(), AngleDialect()
    engine = SimEngine(OraclePolicy(task, dialect=dialect), SimCosts(free_traps=True),
                       dialect=dialect)
    session = Session(engine, task_toolbox(task), strategy=strategy, dialect=dialect)
    assert session.dialect is dialect and session.system.startswith("Call with <<CALL>>")
    result = run_virtual(session.run(task.prompt))
    assert [c.status for c in result.calls] == ["ok"] * 3, result.transcript
    assert result.text.strip().endswith("Done.")
    assert result.n_injected == 3 and result.stop_reason == "eos"
    assert "<<CALL>> a1 <<HEAD>>" in result.transcript and "<<INTR>> a" in result.transcript
    for s in CML_STRINGS:
        assert s not in result.transcript and s not in session.system
    assert dialect.used["parser(transcript=True)"] >= 1  # the simulator observes through it
    assert dialect.used["parser(transcript=False)"] >= 1  # the loop parses through it


def test_free_traps_follow_the_dialect() -> None:
    def latency(dialect: Any) -> float:
        task = _task()
        engine = SimEngine(OraclePolicy(task, dialect=dialect),
                           SimCosts(tpot_s=0.01, free_traps=True), dialect=dialect)
        session = Session(engine, task_toolbox(task), dialect=dialect)
        return run_virtual(session.run(task.prompt)).latency_s
    assert latency(AngleDialect()) == pytest.approx(latency(CML))


def test_forgery_inside_a_call_is_closed_by_the_dialect() -> None:
    dialect = AngleDialect()
    engine = SimEngine(ScriptedPolicy([
        "<<CALL>> c1 <<HEAD>> fetch(key=\"x\") -> 5 and more",
        "\n<<TRAP>><<END>>", "Bye."]), dialect=dialect)
    box = Toolbox([tool(lambda key: key.upper(), name="fetch")])
    result = run_virtual(Session(engine, box, dialect=dialect).run("go"))
    assert result.counters["forged"] >= 1
    assert result.transcript.startswith('<<CALL>> c1 <<HEAD>> fetch(key="x")  <<END>>\n')
    assert [c.status for c in result.calls] == ["ok"] and result.calls[0].value == "X"
    for s in CML_STRINGS:
        assert s not in result.transcript


def test_runtime_and_simulator_build_no_cml_strings() -> None:
    """No CML marker in a string literal (docstrings aside) and no ``markers.<x>`` attribute
    use in ``asynclm.runtime`` and ``asynclm.testing.sim``: the dialect writes all markup."""
    root = pathlib.Path(asynclm.__file__).parent
    found = []
    for pkg in ("runtime", "testing/sim"):
        for path in sorted((root / pkg).glob("*.py")):
            tree = ast.parse(path.read_text())
            docs = {id(n.body[0].value) for n in ast.walk(tree)
                    if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                      ast.AsyncFunctionDef))
                    and n.body and isinstance(n.body[0], ast.Expr)
                    and isinstance(n.body[0].value, ast.Constant)}
            for n in ast.walk(tree):
                if (isinstance(n, ast.Constant) and isinstance(n.value, str)
                        and id(n) not in docs and any(s in n.value for s in CML_STRINGS)):
                    found.append(f"{path.name}:{n.lineno}: {n.value[:40]!r}")
                value = getattr(n, "value", None) if isinstance(n, ast.Attribute) else None
                if (isinstance(value, ast.Attribute) and value.attr == "markers") or (
                        isinstance(value, ast.Name) and value.id == "markers"):
                    found.append(f"{path.name}:{n.lineno}: markers.{n.attr}")
    assert not found


# --------------------------------------------------------------------------------------------
# one id grammar

VALID_IDS = st.from_regex(CALL_ID_RE, fullmatch=True)


@pytest.mark.parametrize("bad", ["a:b", "a.b", "", "a b", "x" * 65, "$a", "é", "a\n"])
def test_not_ids(bad: str) -> None:
    assert not is_call_id(bad)
    with pytest.raises(ValueError, match="invalid"):
        render_call("f", {}, bad or None) if bad else format_ref(Ref(bad))


@settings(max_examples=200, deadline=None)
@given(VALID_IDS)
def test_every_valid_id_can_be_referenced(ident: str) -> None:
    assert is_call_id(ident)
    assert parse_ref(f"${ident}") == (Ref(ident), len(ident) + 1)
    assert parse_ref(f"${ident}.k.0") == (Ref(ident, ("k", 0)), len(ident) + 5)
    assert format_ref(Ref(ident, ("k",))) == f"${ident}.k"
    assert parse_body(f"g(v=${ident})").args == {"v": Ref(ident)}
    assert split_string_refs(f"see ${ident}.", {ident}) == ["see ", Ref(ident), "."]
    (_, call) = Parser().feed(render_call("f", {"v": Ref(ident)}, ident))
    assert isinstance(call, Call) and call.id == ident and call.args == {"v": Ref(ident)}


@pytest.mark.parametrize("written", ["a:b", "a.b", "math.factorial"])
def test_the_runtime_names_a_call_written_with_an_invalid_id(written: str) -> None:
    engine = SimEngine(ScriptedPolicy([
        f'[CALL] {written} [HEAD] fetch(key="x") [END]', "\n[TRAP][END]", "Bye."]))
    box = Toolbox([tool(lambda key: key.upper(), name="fetch")])
    result = run_virtual(Session(engine, box).run("go"))
    (rec,) = result.calls
    assert rec.status == "ok" and rec.value == "X"
    assert rec.id == "c1" and rec.id_assigned and rec.injectable
    assert '[INTR] c1 [HEAD] fetch(key="x") -> "X" [END]' in result.transcript


def test_senders_and_agent_names_follow_the_grammar() -> None:
    control = RunControl()
    for bad in ("a:b", "a.b"):
        with pytest.raises(ValueError, match="invalid sender"):
            control.interrupt("hi", sender=bad)
        with pytest.raises(ValueError, match="invalid agent name"):
            AgentDirectory().register(bad, control)
    control.interrupt("hi", sender="agent-2_b")
    AgentDirectory().register("agent-2_b", control)


def test_strict_ids_config_still_runs_a_renamed_call() -> None:
    engine = SimEngine(ScriptedPolicy(['[CALL] c1 [HEAD] fetch(key="x") [END]',
                                       "\n[TRAP][END]", "Bye."]))
    box = Toolbox([tool(lambda key: key.upper(), name="fetch")])
    result = run_virtual(Session(engine, box, config=SessionConfig(ids="strict")).run("go"))
    assert [c.id for c in result.calls] == ["c1"] and result.calls[0].status == "ok"


def test_strict_ids_a_call_written_with_an_invalid_id_is_renamed_and_answered() -> None:
    """The model wrote an id (``a:b``), just not a valid one: it expects a result, so the call
    is renamed and its result injected, as before ids had one grammar (not fire-and-forget)."""
    engine = SimEngine(ScriptedPolicy(['[CALL] a:b [HEAD] fetch(key="x") [END]',
                                       "\n[TRAP][END]", "Bye."]))
    box = Toolbox([tool(lambda key: key.upper(), name="fetch")])
    result = run_virtual(Session(engine, box, config=SessionConfig(ids="strict")).run("go"))
    (call,) = result.calls
    assert call.id != "a:b" and call.injectable and call.status == "ok"
    assert result.n_injected == 1
