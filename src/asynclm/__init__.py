"""asynclm: asynchronous LLM function calling.

The model keeps decoding while its calls run; each result is appended to its context as an
interrupt at the next safe point. Start with :class:`Session` and :func:`tool`.

The engines behind extras, :class:`LlamaCppEngine` (``asynclm[llama]``) and :class:`HttpEngine`
(``asynclm[http]``), are imported on first use, so ``import asynclm`` stays slim.

This namespace is what an application uses: sessions and their results, tools, the engines, the
stream events, the errors and the trace. The rest lives in its subpackage: the wire format
(``Parser``, ``Markers``, ``DEFAULT_MARKERS``, ``Ref``) in :mod:`asynclm.protocol`, strategies
(``STRATEGIES``, ``Strategy``) in :mod:`asynclm.runtime`, engine authoring (``Capabilities``) in
:mod:`asynclm.engines.base`, ``Breakdown`` in :mod:`asynclm.trace`, test doubles (the simulator,
fake engines and servers) in :mod:`asynclm.testing`.
"""

import importlib
from typing import Any

from asynclm._version import __version__
from asynclm.engines.base import ChatMessage, Engine
from asynclm.errors import (
    AsyncLMError,
    EngineClosedError,
    EngineError,
    ErrorType,
    ProtocolError,
    SessionError,
)
from asynclm.runtime import CallRecord, Session, SessionConfig, SessionResult, run_sync, run_virtual
from asynclm.runtime.control import RunControl, SessionClosedError
from asynclm.runtime.early import ArgStream
from asynclm.runtime.events import (
    CallCompleted,
    CallDelta,
    CallEmitted,
    CallPartial,
    CallProgress,
    CallStarted,
    Done,
    InterruptInjected,
    RollbackEvent,
    StreamEvent,
    TextDelta,
    TrapEvent,
    Waiting,
)
from asynclm.runtime.records import PartialResult
from asynclm.tools import (
    SERIAL,
    DeliveryMode,
    Final,
    Ordered,
    ProcessResult,
    Tool,
    ToolArgumentError,
    Toolbox,
    ToolContext,
    ToolError,
    UnknownToolError,
    run_process,
    tool,
)
from asynclm.trace import Trace

_LAZY = {"LlamaCppEngine": "asynclm.engines.llamacpp", "HttpEngine": "asynclm.engines.openai_http"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'asynclm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncLMError", "EngineClosedError", "EngineError", "ErrorType", "ProtocolError",
    "SessionError",
    "SERIAL", "CallCompleted", "CallDelta",
    "CallEmitted", "CallPartial", "CallProgress", "CallRecord", "CallStarted", "ChatMessage",
    "ArgStream", "DeliveryMode", "Final", "PartialResult",
    "Done", "Engine", "HttpEngine",
    "InterruptInjected", "LlamaCppEngine", "Ordered",
    "ProcessResult", "RollbackEvent",
    "RunControl", "Session", "SessionClosedError", "SessionConfig",
    "SessionResult", "StreamEvent", "TextDelta", "Tool", "ToolArgumentError",
    "ToolContext", "ToolError", "Toolbox", "Trace", "TrapEvent", "UnknownToolError",
    "Waiting", "__version__",
    "run_process", "run_sync", "run_virtual", "tool",
]
