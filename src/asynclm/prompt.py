"""The system prompt: the session dialect's protocol section (how to call, wait and read
results; see :meth:`~asynclm.protocol.Dialect.system_prompt`) with the tool list."""

from __future__ import annotations

from asynclm.protocol import DEFAULT_MARKERS, CmlDialect, Dialect, Markers
from asynclm.protocol.cml import CML_FUTURES_RULES
from asynclm.tools import Toolbox

FUTURES_RULES = CML_FUTURES_RULES
"""CML's futures rules (kept here for existing imports; see :mod:`asynclm.protocol.cml`)."""


def system_prompt(
    tools: Toolbox, *, markers: Markers = DEFAULT_MARKERS, extra: str = "",
    futures: bool = False, dialect: Dialect | None = None,
) -> str:
    """The dialect's rules and worked examples, and the tools as JSON with estimated times;
    with ``futures``, the futures rules and an example after the tools; ``extra`` last.
    ``dialect`` defaults to CML with ``markers``."""
    if dialect is None:
        dialect = CmlDialect(markers)
    text = dialect.system_prompt(tools.describe(estimated=True), futures=futures)
    return text + (f"\n\n{extra}" if extra else "")
