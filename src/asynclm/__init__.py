"""asynclm: asynchronous LLM function calling.

The model keeps decoding while its calls run; each result is appended to its context as an
interrupt at the next safe point. Start with :class:`Session` and :func:`tool`.

The engines behind extras, :class:`LlamaCppEngine` (``asynclm[llama]``) and :class:`HttpEngine`
(``asynclm[openai]``), are imported on first use, so ``import asynclm`` stays slim.
"""

import importlib
from typing import Any

from asynclm.engines.base import Capabilities, ChatMessage, Engine
from asynclm.protocol import DEFAULT_MARKERS, Markers, Parser, Ref
from asynclm.runtime import (
    STRATEGIES, CallRecord, Session, SessionConfig, SessionResult, Strategy, run_sync,
    run_virtual,
)
from asynclm.runtime.control import RunControl, SessionClosedError
from asynclm.runtime.events import (
    CallCompleted, CallDelta, CallEmitted, CallProgress, CallStarted, Done, InterruptInjected,
    RollbackEvent, StreamEvent, TextDelta, TrapEvent,
)
from asynclm.tools import (
    SERIAL, Ordered, ProcessResult, Tool, ToolArgumentError, Toolbox, ToolContext, ToolError,
    UnknownToolError, run_process, tool,
)
from asynclm.trace import Breakdown, Trace

__version__ = "0.1.0"

_LAZY = {"LlamaCppEngine": "asynclm.engines.llamacpp", "HttpEngine": "asynclm.engines.openai_http"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_MARKERS", "SERIAL", "STRATEGIES", "Breakdown", "CallCompleted", "CallDelta",
    "CallEmitted", "CallProgress", "CallRecord", "CallStarted", "Capabilities", "ChatMessage",
    "Done", "Engine", "HttpEngine",
    "InterruptInjected", "LlamaCppEngine", "Markers", "Ordered", "Parser",
    "ProcessResult", "Ref", "RollbackEvent",
    "RunControl", "Session", "SessionClosedError", "SessionConfig",
    "SessionResult", "StreamEvent", "Strategy", "TextDelta", "Tool", "ToolArgumentError",
    "ToolContext", "ToolError", "Toolbox", "Trace", "TrapEvent", "UnknownToolError", "__version__",
    "run_process", "run_sync", "run_virtual", "tool",
]
