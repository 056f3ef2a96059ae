"""Sync against async on the simulator: a scripted task of four independent calls, run by an
ideal model on virtual time, so the comparison takes no model and finishes at once.

    python examples/simulated.py
"""

from __future__ import annotations

from asynclm import Session, run_virtual
from asynclm.testing import OraclePolicy, SimCall, SimCosts, SimEngine, SimTask
from asynclm.testing.sim import task_toolbox
from asynclm.trace import text_timeline

TASK = SimTask(calls=(
    SimCall("w", "get_weather", {"city": "Paris"}, duration_s=0.8),
    SimCall("f", "search_flights", {"origin": "BER", "dest": "CDG"}, duration_s=1.5),
    SimCall("h", "search_hotels", {"city": "Paris"}, duration_s=1.1),
    SimCall("c", "convert_currency", {"amount": 129, "to": "USD"}, duration_s=0.3),
), prompt="Plan a trip to Paris.", answer="Here is your trip.")


def main() -> None:
    latency = {}
    for strategy in ("sync", "async"):
        engine = SimEngine(OraclePolicy(TASK), SimCosts(tpot_s=0.027))  # ~37 tokens/s
        session = Session(engine, task_toolbox(TASK), strategy=strategy)
        result = run_virtual(session.run(TASK.prompt))
        latency[strategy] = result.latency_s
        print(f"{strategy}: {result.latency_s:.2f} s")
        print(text_timeline(result.trace, width=72))
    print(f"async is {latency['sync'] / latency['async']:.2f}x faster")


if __name__ == "__main__":
    main()
