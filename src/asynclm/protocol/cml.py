"""CML, the context markup: the first :class:`~asynclm.protocol.dialect.Dialect`.

``[CALL] id [HEAD] f(x=1) [END]`` (a call), ``[TRAP][END]`` (wait), ``[INTR] id [HEAD] <payload>
[END]`` (a result, written only by the runtime). The marker strings come from
:class:`~asynclm.protocol.events.Markers` (a model profile may map them to single special
tokens); the parser is :class:`~asynclm.protocol.parser.Parser`, rendering is
:mod:`asynclm.protocol.markup`, escaping :mod:`asynclm.protocol.escape`. This module holds the
CML wording: payloads (``f(x=1) -> 42``, ``error: ...``) and the system prompt's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from asynclm.protocol.dialect import Delivery, Segment
from asynclm.protocol.escape import escape_payload
from asynclm.protocol.events import DEFAULT_MARKERS, Markers
from asynclm.protocol.markup import render_call, render_trap
from asynclm.protocol.parser import Parser
from asynclm.protocol.stream_args import CmlArgumentsReader

__all__ = ["CML", "CML_FUTURES_RULES", "CML_RULES", "CmlDialect"]

CML_RULES = """\
You can call functions. A call runs in the background while you keep writing; its result is \
delivered to you later as an interrupt.

To call a function, write one call per block, with a short unique id:
{call} a1 {head} function_name(arg="value", other=2) {end}
Rules:
- Use only the functions listed under "Functions" below, with their exact names and parameters.
- Write all the calls you can make now, one after another, without waiting: slowest first \
(see estimated_time_s).
- A call that needs another call's result must wait for it: write {trap}{end} to wait, then \
make the call with the value from the result.
- Results arrive as {intr} a1 {head} <result> {end}. Only the system writes {intr}; never \
write it yourself and never guess a result.
- If a result is an error, correct the call and make it again.
- When every result you need has arrived, answer the user in plain text, using the results.

The examples below use made-up functions; call only the functions listed under "Functions".

Example 1 (independent calls):
User: Weather in Paris and in Tokyo?
Assistant: {call} w1 {head} get_weather(city="Paris") {end}
{call} w2 {head} get_weather(city="Tokyo") {end}
{trap}{end}
{intr} w2 {head} {{"temp_c": 18}} {end}
{intr} w1 {head} {{"temp_c": 11}} {end}
Paris is 11 °C and Tokyo is 18 °C.

Example 2 (a call that needs a result):
User: Where is my order 7?
Assistant: {call} o1 {head} lookup_order(order_id=7) {end}
{trap}{end}
{intr} o1 {head} {{"tracking": "XZ12"}} {end}
{call} t1 {head} track_parcel(tracking="XZ12") {end}
{trap}{end}
{intr} t1 {head} {{"at": "Lyon depot"}} {end}
Order 7 (parcel XZ12) is at the Lyon depot.

Functions:
"""
"""The CML rules and two worked examples (``str.format`` fields: the markers); the tool list
follows ``Functions:``."""

CML_FUTURES_RULES = """\
Futures: you do not have to wait for a result you only pass on to another call. Write $id for \
the whole result of call id, or $id.key (or $id.0 for an item of a list) for a part of it, as \
an argument. The system runs the call as soon as that result is in. Do not wait, and never \
copy or guess the value.
Example 3 (a call that needs a result, with a future):
User: Put the best-rated desk lamp in my cart.
Assistant: {call} p1 {head} find_product(query="desk lamp") {end}
{call} a1 {head} add_to_cart(product_id=$p1.best.id) {end}
{trap}{end}
{intr} p1 {head} {{"best": {{"id": "P-2048", "rating": 4.8}}}} {end}
{intr} a1 {head} {{"cart_size": 1}} {end}
The lamp P-2048 (rated 4.8) is in your cart.
"""
"""Teaches ``$id`` references (futures); appended after the function list, so it reads as
the later, more specific rule."""


@dataclass(frozen=True, slots=True)
class CmlDialect:
    """CML with the marker strings ``markers`` (see the module docstring). Immutable and
    hashable: one instance may serve any number of sessions."""

    markers: Markers = DEFAULT_MARKERS
    name: str = "cml"

    # -- what the model writes -------------------------------------------------------------
    def parser(self, *, transcript: bool = False) -> Parser:
        return Parser(markers=self.markers, transcript=transcript)

    @property
    def forged_markers(self) -> tuple[str, ...]:
        m = self.markers
        marks = [f.lower() for f in m.forbidden]
        if not any(m.interrupt.lower().startswith(f) for f in marks):
            marks.append(m.interrupt.lower())
        return tuple(marks)

    def count_forged(self, sampled: str) -> int:
        low = sampled.lower()
        return sum(low.count(f) for f in self.forged_markers)

    def close_call(self) -> str:
        return f" {self.markers.end}"

    def call_body(self, raw: str) -> str:
        """The text between ``[HEAD]`` and ``[END]`` (or after ``[CALL]`` without an id),
        stripped."""
        m = self.markers
        if raw.startswith(m.call):
            raw = raw[len(m.call):]
        if raw.rstrip().endswith(m.end):
            raw = raw.rstrip()[: -len(m.end)]
        head = raw.find(m.head)
        return (raw[head + len(m.head):] if head >= 0 else raw).strip()

    def arguments_reader(self) -> CmlArgumentsReader:
        """Reads a call block's arguments as they are written
        (:class:`~asynclm.protocol.stream_args.CmlArgumentsReader`)."""
        return CmlArgumentsReader(self.markers)

    # -- what the runtime (or a scripted model) writes ---------------------------------------
    def render_call(
        self, fn: str, args: Mapping[str, Any], id: str | None = None, *,
        pos: Sequence[Any] = (),
    ) -> str:
        """``[CALL] id [HEAD] fn(...) [END]`` (:func:`~asynclm.protocol.markup.render_call`)."""
        return render_call(fn, args, id, pos=pos, markers=self.markers)

    def render_trap(self) -> str:
        """``[TRAP][END]``."""
        return render_trap(self.markers)

    def render_interrupt(self, items: Sequence[Delivery]) -> list[Segment]:
        """``[INTR] head [HEAD] <escaped payload> [END]`` and a newline, per item. The space
        after ``[HEAD]`` goes with the payload: tokenized together, they give the tokens the
        model would see if the text were in its prompt (``" {"``, not ``" " + "{"``)."""
        out: list[Segment] = []
        for item in items:
            opening, closing = self.interrupt_markup(item.head)
            out.append(Segment(opening, trusted=True))
            out.append(Segment(" " + self.escape_payload(item.payload), trusted=False))
            out.append(Segment(closing, trusted=True))
        return out

    def interrupt_markup(self, head: str) -> tuple[str, str]:
        m = self.markers
        return f"{m.interrupt} {head} {m.head}", f" {m.end}\n"

    def escape_payload(self, text: str) -> str:
        return escape_payload(text, self.markers)

    # -- payload wording -----------------------------------------------------------------------
    def echo(self, body: str, result: str, *, same_as: str | None = None) -> str:
        """``f(x=1) -> 42``; ``f(x=1) -> same call as c1, same result: 42``."""
        if same_as is not None:
            return f"{body} -> same call as {same_as}, same result: {result}"
        return f"{body} -> {result}"

    def error(self, status: str, text: str | None) -> str:
        """``error: <text>``, ``timeout: <text>``, or the bare status when ``text`` is None."""
        return status if text is None else f"{status}: {text}"

    def message(self, sender: str, text: str) -> str:
        """``message from <sender>: <text>``."""
        return f"message from {sender}: {text}"

    def partial(self, result: str) -> str:
        """``partial: <result>`` (``[INTR] c1 [HEAD] partial: ...``)."""
        return f"partial: {result}"

    # -- the system prompt ----------------------------------------------------------------------
    def system_prompt(self, tools: str, *, futures: bool = False) -> str:
        """:data:`CML_RULES`, the tools, and with ``futures`` :data:`CML_FUTURES_RULES`, with
        this dialect's markers."""
        m = self.markers
        fields = {"call": m.call, "head": m.head, "end": m.end, "trap": m.trap,
                  "intr": m.interrupt}
        text = CML_RULES.format(**fields) + tools
        if futures:
            text += "\n\n" + CML_FUTURES_RULES.format(**fields)
        return text

    @property
    def special_tokens(self) -> tuple[str, ...]:
        return self.markers.all()


CML = CmlDialect()
"""CML with the default markers: the default dialect of a session."""
