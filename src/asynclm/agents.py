"""Agent-to-agent interrupts: sessions linked by a built-in ``send_message(to, text)`` tool.

An :class:`AgentDirectory` maps agent names to the :class:`~asynclm.runtime.RunControl` of their
live runs. The ``send_message`` tool of agent A delivers ``text`` into agent B's context as an
interrupt (``[INTR] A [HEAD] message from A: text [END]``), at B's next safe point. Delivery
fails (an error the sender sees as its call's result) when B is unknown or has finished.
"""

from __future__ import annotations

from asynclm.protocol.ids import is_call_id
from asynclm.runtime.control import RunControl, SessionClosedError
from asynclm.tools import Tool, tool


class AgentDirectory:
    """Live agents by name. Names are ids (letters, digits, ``_`` and ``-``), unique while live."""

    def __init__(self) -> None:
        self._agents: dict[str, RunControl] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._agents

    def names(self) -> list[str]:
        return sorted(self._agents)

    def register(self, name: str, control: RunControl) -> None:
        if not is_call_id(name):
            raise ValueError(f"invalid agent name {name!r}: use letters, digits, _ and - (max 64)")
        if name in self._agents:
            raise ValueError(f"an agent named {name!r} is already live")
        self._agents[name] = control

    def unregister(self, name: str, control: RunControl | None = None) -> None:
        if control is None or self._agents.get(name) is control:
            self._agents.pop(name, None)

    def deliver(self, sender: str, to: str, text: str) -> str:
        """Queue ``text`` from ``sender`` in agent ``to``'s run. Raises ``LookupError`` for an
        unknown or finished agent, ``ValueError`` for an invalid message."""
        if to == sender:
            raise ValueError("an agent cannot message itself")
        control = self._agents.get(to)
        if control is None:
            known = ", ".join(n for n in self.names() if n != sender) or "none"
            raise LookupError(f"no live agent named {to!r} (live agents: {known})")
        try:
            control.interrupt(text, sender=sender)
        except SessionClosedError:
            raise LookupError(f"agent {to!r} has finished") from None
        return f"delivered to {to}"


def send_message_tool(directory: AgentDirectory, sender: str) -> Tool:
    """The ``send_message(to, text)`` tool of agent ``sender`` (async: it runs on the loop,
    where the interrupt manager lives)."""

    @tool(name="send_message", estimated_time=0.0)
    async def send_message(to: str, text: str) -> str:
        """Send a message to another agent. It reaches that agent while it works, as an
        interrupt; its reply, if any, reaches you the same way.

        Args:
            to: Name of the agent to message.
            text: The message.
        """
        return directory.deliver(sender, to, text)

    return send_message
