"""The one id grammar: call ids, interrupt heads (call ids and message senders), agent names and
``$id`` references.

An id is 1 to :data:`MAX_ID_CHARS` characters out of :data:`ID_CHARS` (ASCII letters, digits,
``_`` and ``-``). Every valid id can be referenced as ``$id`` (no ``.``, which starts a
reference path, and no ``:``), and nothing else is a valid id. A model that writes an invalid id
in a call's id slot (``a:b``, ``math.factorial``) has its call named by the runtime, as a call
written without an id (see :class:`~asynclm.protocol.events.Call`).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["CALL_ID_RE", "ID_CHARS", "MAX_ID_CHARS", "REF_ID_RE", "is_call_id"]

ID_CHARS: Final = "A-Za-z0-9_-"
"""The characters of an id, as a regular-expression character-class body."""

MAX_ID_CHARS: Final = 64
"""Longest id."""

CALL_ID_RE: Final = re.compile(rf"[{ID_CHARS}]{{1,{MAX_ID_CHARS}}}")
"""A valid id (use ``fullmatch``, or :func:`is_call_id`)."""

REF_ID_RE: Final = re.compile(rf"[{ID_CHARS}]+")
"""The id of a ``$id`` reference in text: the *longest* run of id characters after ``$`` (so
``$10`` is id ``"10"``, never ``$1`` followed by ``0``). A run longer than
:data:`MAX_ID_CHARS` is not a valid id, so it names no call."""


def is_call_id(text: object) -> bool:
    """Whether ``text`` is a valid id (a ``str`` matching :data:`CALL_ID_RE` whole)."""
    return isinstance(text, str) and CALL_ID_RE.fullmatch(text) is not None
