"""The system prompt that teaches CML (context markup) to a model, with the tool list."""

from __future__ import annotations

from asynclm.protocol import DEFAULT_MARKERS, Markers
from asynclm.tools import Toolbox

_RULES = """\
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


FUTURES_RULES = """\
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


def system_prompt(
    tools: Toolbox, *, markers: Markers = DEFAULT_MARKERS, extra: str = "",
    futures: bool = False,
) -> str:
    """The CML rules, two worked examples, and the tools as JSON with estimated times; with
    ``futures``, the futures rules and an example after the tools."""
    rules = _RULES.format(
        call=markers.call, head=markers.head, end=markers.end, trap=markers.trap,
        intr=markers.interrupt,
    )
    text = rules + tools.describe(estimated=True)
    if futures:
        text += "\n\n" + FUTURES_RULES.format(
            call=markers.call, head=markers.head, end=markers.end, trap=markers.trap,
            intr=markers.interrupt)
    return text + (f"\n\n{extra}" if extra else "")
