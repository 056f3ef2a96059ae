"""The protocol, sans I/O: everything the model reads or writes.

:class:`Dialect` is the seam (:mod:`asynclm.protocol.dialect`): one markup's parser, rendering,
escaping and system-prompt rules; :class:`CmlDialect` (CML) is its first implementation. Also
here: the events, the CML parser, call bodies, rendering, and the one id grammar
(:mod:`asynclm.protocol.ids`). Nothing in this package imports asyncio or does I/O. See
``DESIGN.md`` section 2.
"""

from asynclm.protocol.body import BodyError, ParsedBody, parse_body
from asynclm.protocol.cml import CML, CmlDialect
from asynclm.protocol.dialect import Delivery, Dialect, Segment, StreamParser, tokenize_segments
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
from asynclm.protocol.ids import CALL_ID_RE, MAX_ID_CHARS, is_call_id
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
    "CALL_ID_RE",
    "CML",
    "DEFAULT_MARKERS",
    "MAX_CALL_CHARS",
    "MAX_ID_CHARS",
    "BodyError",
    "Call",
    "CallOpened",
    "CmlDialect",
    "Delivery",
    "Dialect",
    "Event",
    "Forged",
    "Interrupt",
    "MalformedCall",
    "Markers",
    "ParsedBody",
    "Parser",
    "Ref",
    "Segment",
    "StreamParser",
    "Text",
    "Trap",
    "escape_payload",
    "format_call",
    "format_ref",
    "format_value",
    "is_call_id",
    "parse_body",
    "render_call",
    "render_interrupt",
    "render_trap",
    "tokenize_segments",
]
