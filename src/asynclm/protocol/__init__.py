"""The CML protocol, sans I/O: events, the incremental parser, call bodies, rendering.

Nothing in this package imports asyncio or does I/O. See ``DESIGN.md`` section 2.
"""

from asynclm.protocol.body import BodyError, ParsedBody, parse_body
from asynclm.protocol.events import (
    DEFAULT_MARKERS,
    Call,
    CallOpened,
    Event,
    Forged,
    Interrupt,
    MalformedCall,
    Markers,
    Ref,
    Text,
    Trap,
)
from asynclm.protocol.markup import (
    escape_payload,
    format_call,
    format_ref,
    format_value,
    render_call,
    render_interrupt,
    render_trap,
)
from asynclm.protocol.parser import MAX_CALL_CHARS, Parser

__all__ = [
    "DEFAULT_MARKERS",
    "MAX_CALL_CHARS",
    "BodyError",
    "Call",
    "CallOpened",
    "Event",
    "Forged",
    "Interrupt",
    "MalformedCall",
    "Markers",
    "ParsedBody",
    "Parser",
    "Ref",
    "Text",
    "Trap",
    "escape_payload",
    "format_call",
    "format_ref",
    "format_value",
    "parse_body",
    "render_call",
    "render_interrupt",
    "render_trap",
]
