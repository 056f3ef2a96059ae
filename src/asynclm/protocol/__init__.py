"""The protocol, sans I/O: everything the model reads or writes.

:class:`Dialect` is the seam (:mod:`asynclm.protocol.dialect`): one markup's parser, rendering,
escaping and system-prompt rules; :class:`CmlDialect` (CML) is its first implementation, the
native tool-call formats :class:`HermesDialect`, :class:`Llama3Dialect`, :class:`MistralDialect`
and :class:`PythonicDialect` the others (:func:`get_dialect` by name, :func:`detect_dialect` from
a chat template; where their results go is a :class:`ChatFrame`'s business). Also
here: the events, the CML parser, call bodies, rendering, and the one id grammar
(:mod:`asynclm.protocol.ids`). Nothing in this package imports asyncio or does I/O. See
``DESIGN.md`` section 2.
"""

from asynclm.protocol.body import BodyError, ParsedBody, parse_body
from asynclm.protocol.chat_frames import ChatFrame, Framing, frame_for_template
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
from asynclm.protocol.hermes import HermesDialect
from asynclm.protocol.ids import CALL_ID_RE, MAX_ID_CHARS, is_call_id
from asynclm.protocol.llama3 import Llama3Dialect
from asynclm.protocol.markup import (
    escape_payload,
    format_call,
    format_ref,
    format_value,
    render_call,
    render_interrupt,
    render_trap,
)
from asynclm.protocol.mistral import MistralDialect
from asynclm.protocol.native import NativeDialect, NativeParser
from asynclm.protocol.parser import MAX_CALL_CHARS, Parser
from asynclm.protocol.pythonic import PythonicDialect
from asynclm.protocol.registry import DIALECTS, detect_dialect, get_dialect

__all__ = [
    "CALL_ID_RE",
    "CML",
    "DEFAULT_MARKERS",
    "DIALECTS",
    "MAX_CALL_CHARS",
    "MAX_ID_CHARS",
    "BodyError",
    "Call",
    "CallOpened",
    "ChatFrame",
    "CmlDialect",
    "Delivery",
    "Dialect",
    "Event",
    "Forged",
    "Framing",
    "HermesDialect",
    "Interrupt",
    "Llama3Dialect",
    "MalformedCall",
    "Markers",
    "MistralDialect",
    "NativeDialect",
    "NativeParser",
    "ParsedBody",
    "Parser",
    "PythonicDialect",
    "Ref",
    "Segment",
    "StreamParser",
    "Text",
    "Trap",
    "detect_dialect",
    "escape_payload",
    "format_call",
    "format_ref",
    "format_value",
    "frame_for_template",
    "get_dialect",
    "is_call_id",
    "parse_body",
    "render_call",
    "render_interrupt",
    "render_trap",
    "tokenize_segments",
]
