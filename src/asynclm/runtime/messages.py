"""A message from outside the model, to inject as an interrupt.

Its own small module: :mod:`asynclm.runtime.control` queues messages and
:mod:`asynclm.runtime.interrupts` renders them, and neither needs the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Message"]


@dataclass(frozen=True, slots=True)
class Message:
    """A message from outside the model (a person, another agent) to inject as an interrupt."""

    sender: str
    text: str
