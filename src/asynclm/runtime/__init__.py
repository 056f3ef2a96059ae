"""The asynchronous runtime: session loop, executor, interrupt manager, strategies."""

from asynclm.runtime.clock import VirtualTimeLoop, run_virtual
from asynclm.runtime.config import SessionConfig
from asynclm.runtime.control import RunControl, SessionClosedError
from asynclm.runtime.messages import Message
from asynclm.runtime.records import CallRecord, SessionResult, Status
from asynclm.runtime.session import Session, run_sync
from asynclm.runtime.strategies import STRATEGIES, Strategy, get_strategy

__all__ = [
    "STRATEGIES", "CallRecord", "Message", "RunControl", "Session", "SessionClosedError",
    "SessionConfig", "SessionResult", "Status", "Strategy", "VirtualTimeLoop", "get_strategy",
    "run_sync", "run_virtual",
]
