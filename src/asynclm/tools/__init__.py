"""Declaring, validating and invoking tools.

```python
from asynclm.tools import tool, Toolbox

@tool(timeout=5.0, estimated_time=0.3)
def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict:
    \"\"\"Current weather for a city.

    Args:
        city: City name, e.g. "Paris".
    \"\"\"

box = Toolbox([get_weather])
t = box.get_checked("get_weather")      # UnknownToolError suggests close names
kwargs = t.validate({"city": "Paris"})  # ToolArgumentError: nothing runs
result = await t.invoke(kwargs)         # sync tools run in a worker thread

tools = await from_mcp(mcp_client)     # the tools of an MCP server (extra: mcp)
```
"""

from ._context import ToolContext
from ._decorator import tool
from ._errors import (
    MCPToolError,
    ToolArgumentError,
    ToolError,
    ToolNotImplemented,
    UnknownToolError,
)
from ._mcp import from_mcp
from ._ordering import SERIAL, OrderBy, Ordered
from ._process import ProcessResult, run_process
from ._tool import DELIVERY_MODES, DeliveryMode, Final, Handler, Tool, check_delivery
from ._toolbox import Toolbox

__all__ = [
    "DELIVERY_MODES",
    "SERIAL",
    "DeliveryMode",
    "Final",
    "Handler",
    "MCPToolError",
    "OrderBy",
    "Ordered",
    "ProcessResult",
    "Tool",
    "ToolArgumentError",
    "ToolContext",
    "ToolError",
    "ToolNotImplemented",
    "Toolbox",
    "UnknownToolError",
    "check_delivery",
    "from_mcp",
    "run_process",
    "tool",
]
