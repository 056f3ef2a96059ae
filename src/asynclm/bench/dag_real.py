"""``asynclm bench dag --engine llamacpp``: dependent-call tasks with real Python tools on a real
model. Each task is run twice in the same process, alternating the order: **Async** with the
plain CML prompt (the model waits for a result and copies the value) and **Async with futures**
(the prompt's futures block: the model may pass ``$id.key``).

Reported per variant: how often the model uses references correctly (every dependent call
references the right call, resolves to the expected value and succeeds), how often all expected
calls are made with the expected (resolved) arguments, and latency (first to last token).

The tools are real functions over a small deterministic data set; they sleep for the latency of
the service they stand for. Ids are arbitrary (``AZ-7731``), so a model that guesses instead of
using the result makes a call that fails or has the wrong argument.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from asynclm.bench._stats import quantile
from asynclm.engines.llamacpp import LlamaCppEngine
from asynclm.prompt import system_prompt
from asynclm.runtime import Session, SessionConfig
from asynclm.tools import Toolbox, tool

# -- the data and the tools ---------------------------------------------------------------------

_FLIGHTS = {
    ("paris", "rome"): [{"id": "AZ-7731", "price": 89}, {"id": "AF-1204", "price": 132}],
    ("berlin", "madrid"): [{"id": "IB-3318", "price": 74}, {"id": "LH-9020", "price": 151}],
    ("london", "oslo"): [{"id": "SK-4410", "price": 65}],
}
_USERS = {"alice": "U-1042", "bob": "U-2291", "carol": "U-3307"}
_ORDERS = {"U-1042": "O-5521", "U-2291": "O-6180", "U-3307": "O-7049"}
_STATUS = {"O-5521": "shipped", "O-6180": "delivered", "O-7049": "processing"}
_LANDMARKS = {"eiffel tower": "Paris", "colosseum": "Rome", "big ben": "London"}
_WEATHER = {"paris": 14, "rome": 21, "london": 11, "madrid": 24}
_PRICES = {"lamp": 40.0, "desk": 210.0, "chair": 85.0}
_TO_EUR = {"USD": 0.92, "EUR": 1.0, "GBP": 1.17}
_BOOKINGS: dict[str, str] = {}


@tool(timeout=10.0, estimated_time=0.8)
async def search_flights(origin: str, destination: str) -> dict[str, Any]:
    """Flights between two cities; the cheapest first.

    Args:
        origin: Departure city, e.g. "Paris".
        destination: Arrival city, e.g. "Rome".
    """
    await asyncio.sleep(0.8)
    found = _FLIGHTS.get((origin.strip().lower(), destination.strip().lower()), [])
    return {"cheapest": found[0] if found else None, "count": len(found)}


@tool(timeout=10.0, estimated_time=0.5)
async def book_flight(flight_id: str) -> dict[str, Any]:
    """Book a flight by its id (from search_flights).

    Args:
        flight_id: The flight id, e.g. "XX-0000".
    """
    await asyncio.sleep(0.5)
    known = {f["id"] for fs in _FLIGHTS.values() for f in fs}
    if flight_id not in known:
        raise LookupError(f"unknown flight id {flight_id!r}")
    ref = _BOOKINGS.setdefault(flight_id, f"BK-{len(_BOOKINGS) + 100}")
    return {"booking": ref, "flight_id": flight_id, "status": "confirmed"}


@tool(timeout=10.0, estimated_time=0.4)
async def find_user(name: str) -> dict[str, Any]:
    """Look up a customer by name.

    Args:
        name: The customer's first name.
    """
    await asyncio.sleep(0.4)
    uid = _USERS.get(name.strip().lower())
    if uid is None:
        raise LookupError(f"no user named {name!r}")
    return {"user_id": uid, "name": name}


@tool(timeout=10.0, estimated_time=0.6)
async def get_latest_order(user_id: str) -> dict[str, Any]:
    """The latest order of a customer.

    Args:
        user_id: The customer's id (from find_user).
    """
    await asyncio.sleep(0.6)
    oid = _ORDERS.get(user_id)
    if oid is None:
        raise LookupError(f"unknown user id {user_id!r}")
    return {"order_id": oid, "user_id": user_id}


@tool(timeout=10.0, estimated_time=0.5)
async def track_order(order_id: str) -> dict[str, Any]:
    """Shipping status of an order.

    Args:
        order_id: The order id (from get_latest_order).
    """
    await asyncio.sleep(0.5)
    st = _STATUS.get(order_id)
    if st is None:
        raise LookupError(f"unknown order id {order_id!r}")
    return {"order_id": order_id, "status": st}


@tool(timeout=10.0, estimated_time=0.4)
async def locate_landmark(landmark: str) -> dict[str, Any]:
    """The city a landmark is in.

    Args:
        landmark: The landmark's name.
    """
    await asyncio.sleep(0.4)
    city = _LANDMARKS.get(landmark.strip().lower())
    if city is None:
        raise LookupError(f"unknown landmark {landmark!r}")
    return {"city": city}


@tool(timeout=10.0, estimated_time=0.6)
async def get_weather(city: str) -> dict[str, Any]:
    """Current temperature in a city.

    Args:
        city: City name.
    """
    await asyncio.sleep(0.6)
    t = _WEATHER.get(city.strip().lower())
    if t is None:
        raise LookupError(f"no weather for {city!r}")
    return {"city": city, "temp_c": t}


@tool(timeout=10.0, estimated_time=0.3)
async def get_price(item: str) -> dict[str, Any]:
    """Price of a shop item in US dollars.

    Args:
        item: The item's name.
    """
    await asyncio.sleep(0.3)
    p = _PRICES.get(item.strip().lower())
    if p is None:
        raise LookupError(f"unknown item {item!r}")
    return {"item": item, "usd": p}


@tool(timeout=10.0, estimated_time=0.3)
async def convert_currency(amount: float, src: str, dst: str) -> dict[str, Any]:
    """Convert an amount between currencies (USD, EUR, GBP).

    Args:
        amount: The amount.
        src: Source currency code.
        dst: Target currency code.
    """
    await asyncio.sleep(0.3)
    try:
        value = amount * _TO_EUR[src.upper()] / _TO_EUR[dst.upper()]
    except KeyError:
        raise LookupError(f"unknown currency {src!r} or {dst!r}") from None
    return {"amount": round(value, 2), "currency": dst.upper()}


TOOLS = Toolbox([search_flights, book_flight, find_user, get_latest_order, track_order,
                 locate_landmark, get_weather, get_price, convert_currency])


# -- the tasks ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Expected:
    """A call the task needs: ``fn`` with ``args`` (resolved values; strings compared without
    case). ``needs`` maps an argument to the function whose result it comes from: the model
    should pass it as a reference to that call."""

    fn: str
    args: Mapping[str, Any]
    needs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RealTask:
    name: str
    prompt: str
    calls: tuple[Expected, ...]


TASKS: tuple[RealTask, ...] = (
    RealTask("book-cheapest", "Book the cheapest flight from Paris to Rome.", (
        Expected("search_flights", {"origin": "Paris", "destination": "Rome"}),
        Expected("book_flight", {"flight_id": "AZ-7731"}, {"flight_id": "search_flights"}),
    )),
    RealTask("landmark-weather", "What is the temperature in the city where the Colosseum is?", (
        Expected("locate_landmark", {"landmark": "Colosseum"}),
        Expected("get_weather", {"city": "Rome"}, {"city": "locate_landmark"}),
    )),
    RealTask("price-eur", "How much does the desk cost in euros?", (
        Expected("get_price", {"item": "desk"}),
        Expected("convert_currency", {"amount": 210.0, "src": "USD", "dst": "EUR"},
                 {"amount": "get_price"}),
    )),
    RealTask("order-status", "What is the shipping status of Alice's latest order?", (
        Expected("find_user", {"name": "Alice"}),
        Expected("get_latest_order", {"user_id": "U-1042"}, {"user_id": "find_user"}),
        Expected("track_order", {"order_id": "O-5521"}, {"order_id": "get_latest_order"}),
    )),
    RealTask("book-and-weather",
             "Book the cheapest flight from Berlin to Madrid, and tell me the temperature in "
             "Madrid.", (
        Expected("search_flights", {"origin": "Berlin", "destination": "Madrid"}),
        Expected("book_flight", {"flight_id": "IB-3318"}, {"flight_id": "search_flights"}),
        Expected("get_weather", {"city": "Madrid"}),
    )),
    RealTask("two-users", "Find the latest order ids of Bob and of Carol.", (
        Expected("find_user", {"name": "Bob"}),
        Expected("find_user", {"name": "Carol"}),
        Expected("get_latest_order", {"user_id": "U-2291"}, {"user_id": "find_user"}),
        Expected("get_latest_order", {"user_id": "U-3307"}, {"user_id": "find_user"}),
    )),
    RealTask("landmark-book", "Book the cheapest flight from London to Oslo and tell me which "
             "city Big Ben is in.", (
        Expected("search_flights", {"origin": "London", "destination": "Oslo"}),
        Expected("book_flight", {"flight_id": "SK-4410"}, {"flight_id": "search_flights"}),
        Expected("locate_landmark", {"landmark": "Big Ben"}),
    )),
    RealTask("status-chain-bob", "Is Bob's latest order delivered yet?", (
        Expected("find_user", {"name": "Bob"}),
        Expected("get_latest_order", {"user_id": "U-2291"}, {"user_id": "find_user"}),
        Expected("track_order", {"order_id": "O-6180"}, {"order_id": "get_latest_order"}),
    )),
)


# -- scoring (pure) -------------------------------------------------------------------------------

def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.strip().lower() == b.strip().lower()
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) < 1e-6
    return bool(a == b)


def score(task: RealTask, calls: list[Any]) -> dict[str, Any]:
    """Match the run's calls (``CallRecord``) to the expected ones. ``calls_correct``: every
    expected call was made, succeeded, with the expected resolved arguments. ``refs_correct``:
    moreover every argument listed in ``needs`` was written as a reference to a call of the
    named function. ``refs_used``: how many dependent arguments were references at all."""
    by_id = {c.id: c for c in calls}
    free = [c for c in calls if c.status == "ok" and c.resolved_args is not None]
    matched: list[tuple[Expected, Any]] = []
    for exp in task.calls:
        hit = next((c for c in free if c.fn == exp.fn and all(
            k in c.resolved_args and _same(c.resolved_args[k], v) for k, v in exp.args.items())),
            None)
        if hit is not None:
            free.remove(hit)
        matched.append((exp, hit))
    n_dep = sum(len(e.needs) for e in task.calls)
    refs_ok = refs_used = 0
    for exp, hit in matched:
        for arg, src_fn in exp.needs.items():
            cand = hit or next((c for c in calls if c.fn == exp.fn), None)
            if cand is None:
                continue
            raw = cand.args.get(arg)
            ref_id = getattr(raw, "id", None)
            if ref_id is not None:
                refs_used += 1
                if hit is not None and ref_id in by_id and by_id[ref_id].fn == src_fn:
                    refs_ok += 1
    calls_correct = all(h is not None for _, h in matched)
    return {"calls_correct": calls_correct, "refs_correct": calls_correct and refs_ok == n_dep,
            "dependent_args": n_dep, "refs_used": refs_used, "refs_ok": refs_ok,
            "n_calls": len(calls), "n_failed": sum(1 for c in calls if c.status != "ok")}


# -- the runner ---------------------------------------------------------------------------------

VARIANTS = ("async", "async-futures")


async def run_one(engine: Any, task: RealTask, variant: str, *, max_tokens: int = 320,
                  deadline_s: float = 300.0) -> dict[str, Any]:
    """One task, one variant, on a loaded engine; the prompt is processed first (prefix cache)
    so every run starts alike."""
    _BOOKINGS.clear()
    session = Session(engine, TOOLS, strategy="async",
                      system=system_prompt(TOOLS, futures=variant == "async-futures"),
                      config=SessionConfig(max_tokens=max_tokens, deadline_s=deadline_s))
    await session.warm_up(task.prompt)
    r = await session.run(task.prompt)
    rec = score(task, list(r.calls))
    rec.update(latency_s=r.latency_s, stop_reason=r.stop_reason, n_generated=r.n_generated,
               breakdown=dataclasses.asdict(r.trace.breakdown()),
               answer=r.text.strip()[:400],
               calls=[{"id": c.id, "fn": c.fn, "raw": c.raw[:200], "status": c.status,
                       "depends_on": list(c.depends_on),
                       "error": (c.error or "")[:200] or None} for c in r.calls])
    return rec


def bench_dag_real(
    *, model: str = "qwen2.5-coder-1.5b", limit: int | None = None, repeats: int = 1,
    threads: int | None = None, progress: Callable[[str], None] | None = None,
    engine: Any = None, deadline_s: float = 300.0, max_tokens: int = 320,
) -> dict[str, Any]:
    """Every task (the first ``limit``) under both variants, ``repeats`` times, alternating
    which variant goes first. Returns the JSON-ready result."""
    say = progress or (lambda _m: None)
    tasks = TASKS[:limit] if limit else TASKS

    async def main() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        nonlocal engine
        own = engine is None
        t = time.perf_counter()
        if engine is None:
            engine = await asyncio.to_thread(LlamaCppEngine.from_name, model, n_threads=threads)
        env = {"model": model, "load_s": time.perf_counter() - t,
               "threads": getattr(engine, "n_threads", None)}
        rows: list[dict[str, Any]] = []
        try:
            for n, task in enumerate(tasks):
                for rep in range(repeats):
                    order = VARIANTS if (n + rep) % 2 == 0 else VARIANTS[::-1]
                    for v in order:
                        try:
                            rec = await run_one(engine, task, v, max_tokens=max_tokens,
                                                deadline_s=deadline_s)
                        except Exception as exc:  # noqa: BLE001 - one run never ends the bench
                            rec = {"error": f"{type(exc).__name__}: {exc}"[:300],
                                   "calls_correct": False, "refs_correct": False,
                                   "latency_s": None}
                        rows.append({"task": task.name, "variant": v, "repeat": rep,
                                     "run_order": order.index(v), **rec})
                        lat = rec.get("latency_s")
                        say(f"[{n + 1}/{len(tasks)}] {task.name} {v}: "
                            + (f"{lat:.2f}s" if lat is not None else "error")
                            + f" calls {'ok' if rec['calls_correct'] else 'x'}"
                            + f" refs {'ok' if rec['refs_correct'] else 'x'}")
        finally:
            if own:
                await engine.aclose()
        return rows, env

    wall = time.perf_counter()
    rows, env = asyncio.run(main())
    env["wall_s"] = time.perf_counter() - wall
    return {"benchmark": "dag-real", "params": {"model": model, "tasks": len(tasks),
                                                 "repeats": repeats, "variants": list(VARIANTS),
                                                 "deadline_s": deadline_s,
                                                 "max_tokens": max_tokens},
            "environment": env, "summary": summarize_real(rows), "runs": rows}


def summarize_real(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in VARIANTS:
        rs = [r for r in rows if r["variant"] == v]
        lats = [r["latency_s"] for r in rs if r.get("latency_s") is not None]
        dep = sum(r.get("dependent_args", 0) for r in rs)
        out[v] = {
            "runs": len(rs),
            "calls_correct": sum(bool(r.get("calls_correct")) for r in rs),
            "refs_correct": sum(bool(r.get("refs_correct")) for r in rs),
            "dependent_args": dep,
            "refs_used": sum(r.get("refs_used", 0) for r in rs),
            "refs_ok": sum(r.get("refs_ok", 0) for r in rs),
            "latency_median_s": quantile(lats, .5) if lats else None,
        }
    pairs: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in rows:
        if r.get("latency_s") is not None:
            pairs.setdefault((r["task"], r["repeat"]), {})[r["variant"]] = r
    both = [p for p in pairs.values() if len(p) == 2]
    ok = [p for p in both if all(x["calls_correct"] for x in p.values())]
    out["paired"] = {
        "pairs": len(both),
        "speedup_per_task_median": quantile(
            [p["async"]["latency_s"] / p["async-futures"]["latency_s"] for p in both], .5)
        if both else None,
        "pairs_both_correct": len(ok),
        "speedup_both_correct_median": quantile(
            [p["async"]["latency_s"] / p["async-futures"]["latency_s"] for p in ok], .5)
        if ok else None,
    }
    return out


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["summary"]
    p = result["params"]
    lines = [
        f"# Dependent calls on a real model ({p['model']}, {p['tasks']} tasks × {p['repeats']})",
        "", f"Command: `{command}`", "",
        "| variant | runs | all calls correct | references correct | dependent args as "
        "references (ok / used / total) | median latency (s) |",
        "|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        x = s[v]
        lat = x["latency_median_s"]
        lines.append(
            f"| {v} | {x['runs']} | {x['calls_correct']} | {x['refs_correct']} | "
            f"{x['refs_ok']} / {x['refs_used']} / {x['dependent_args']} | "
            f"{'' if lat is None else f'{lat:.2f}'} |")
    pr = s["paired"]
    sp = pr["speedup_per_task_median"]
    spc = pr["speedup_both_correct_median"]
    lines += ["", f"Paired runs: {pr['pairs']}; async ÷ async-futures latency, per-task median: "
              + ("n/a" if sp is None else f"{sp:.2f}x")
              + f"; on the {pr['pairs_both_correct']} pairs where both made every call right: "
              + ("n/a" if spc is None else f"{spc:.2f}x") + ".", ""]
    return "\n".join(lines)
