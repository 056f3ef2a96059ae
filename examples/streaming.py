"""Follow a run as it happens: text, each call as it is written, started, reporting progress and
completed, and each batch of results going into the model's context.

    python examples/streaming.py
    ASYNCLM_MODEL=qwen2.5-coder-0.5b python examples/streaming.py
"""

from __future__ import annotations

import asyncio
import os

from asynclm import (
    CallCompleted, CallEmitted, CallProgress, Done, InterruptInjected, LlamaCppEngine, Session,
    TextDelta, ToolContext, tool,
)


@tool(timeout=10.0, estimated_time=1.5)
async def search_flights(origin: str, dest: str, ctx: ToolContext) -> dict:
    """Cheapest flight between two airports (IATA codes)."""
    for airline in ("AF", "LH", "BA"):
        await asyncio.sleep(0.5)
        ctx.progress(f"asked {airline}")  # reaches the stream as call.progress
    return {"best": f"AF 1234 {origin}-{dest}", "price_eur": 129}


async def main() -> None:
    engine = LlamaCppEngine.from_name(os.environ.get("ASYNCLM_MODEL", "qwen2.5-coder-1.5b"))
    session = Session(engine, [search_flights])
    try:
        async for event in session.stream("Find me a flight from Berlin (BER) to Paris (CDG)."):
            match event:
                case TextDelta(text=text):
                    print(text, end="", flush=True)
                case CallEmitted(call_id=call_id, fn=fn, args=args):
                    print(f"\n  -> {call_id} {fn}({args})")
                case CallProgress(call_id=call_id, message=message):
                    print(f"  .. {call_id} {message}")
                case CallCompleted(record=rec):
                    print(f"  <- {rec.id} {rec.status}: {rec.value!r}")
                case InterruptInjected(call_ids=ids):
                    print(f"  == results of {', '.join(ids)} are in the context")
                case Done(result=result):
                    print(f"\n{result.latency_s:.1f} s, {result.stop_reason}")
    finally:
        await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
