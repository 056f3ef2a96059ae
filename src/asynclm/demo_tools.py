"""Tools for the demo: real Python functions over a small built-in travel data set, with the
latencies of the web APIs they stand for (weather ~0.9 s, flights ~2.4 s, hotels ~1.6 s,
currency ~0.4 s). Answers are deterministic functions of the arguments, so any city works."""

from __future__ import annotations

import asyncio
import hashlib

from asynclm.tools import Toolbox, tool

_RATES_TO_EUR = {"EUR": 1.0, "USD": 0.926, "GBP": 1.17, "JPY": 0.0062, "CHF": 1.05}
_AIRLINES = ("TP", "LH", "AF", "IB", "KL", "U2", "FR")
_HOTEL_WORDS = ("Casa", "Hotel", "Villa", "Residence", "Pension")
_HOTEL_NAMES = ("do Rio", "Central", "Aurora", "Miradouro", "Bellevue", "Alfama", "Estrela")


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).lower().encode()).digest()[:4], "big")


@tool(timeout=10.0, estimated_time=0.9)
async def get_weather(city: str, days: int = 1) -> dict:
    """Weather forecast for a city.

    Args:
        city: City name, e.g. "Lisbon".
        days: Number of days to forecast (1-7).
    """
    await asyncio.sleep(0.9)
    s = _seed("weather", city)
    kinds = ("sun", "clouds", "rain", "sun", "wind")
    days = max(1, min(int(days), 7))
    return {"city": city, "forecast": [kinds[(s >> i) % len(kinds)] for i in range(days)],
            "high_c": 8 + s % 20}


@tool(timeout=10.0, estimated_time=2.4)
async def search_flights(origin: str, destination: str, date: str) -> dict:
    """Cheapest flight between two airports on a date.

    Args:
        origin: Origin airport code, e.g. "BER".
        destination: Destination airport code, e.g. "LIS".
        date: Departure date, YYYY-MM-DD.
    """
    await asyncio.sleep(2.4)
    s = _seed("flight", origin, destination, date)
    return {"flight": f"{_AIRLINES[s % len(_AIRLINES)]} {100 + s % 900}",
            "departs": f"{date} {6 + s % 14:02d}:{(s >> 5) % 4 * 15:02d}",
            "price_eur": 59 + s % 240}


@tool(timeout=10.0, estimated_time=1.6)
async def search_hotels(city: str, nights: int, max_price_eur: float) -> dict:
    """Best-rated hotel in a city under a nightly price.

    Args:
        city: City name.
        nights: Number of nights.
        max_price_eur: Maximum price per night in EUR.
    """
    await asyncio.sleep(1.6)
    s = _seed("hotel", city)
    price = min(float(max_price_eur), 60 + s % 120)
    name = f"{_HOTEL_WORDS[s % len(_HOTEL_WORDS)]} {_HOTEL_NAMES[(s >> 3) % len(_HOTEL_NAMES)]}"
    return {"hotel": name, "price_per_night_eur": round(price), "total_eur": round(price * nights),
            "rating": round(3.5 + (s % 15) / 10, 1)}


@tool(timeout=10.0, estimated_time=0.4)
async def convert_currency(amount: float, source: str, target: str) -> float:
    """Convert an amount of money between currencies (EUR, USD, GBP, JPY, CHF).

    Args:
        amount: Amount in the source currency.
        source: Source currency code.
        target: Target currency code.
    """
    await asyncio.sleep(0.4)
    try:
        eur = float(amount) * _RATES_TO_EUR[source.upper()]
        return round(eur / _RATES_TO_EUR[target.upper()], 2)
    except KeyError as exc:
        raise ValueError(f"unknown currency {exc.args[0]!r}; known: {', '.join(_RATES_TO_EUR)}") from None


TRAVEL_TOOLS = Toolbox([get_weather, search_flights, search_hotels, convert_currency])

TRIP_PROMPT = (
    "Plan a 3-night trip from Berlin (BER) to Lisbon (LIS) leaving 2026-12-04: the weather in "
    "Lisbon, the cheapest flight, a hotel in Lisbon under 150 EUR a night, and how much my "
    "budget of 600 EUR is in USD."
)

DEMO_TASKS: dict[str, str] = {
    "trip": TRIP_PROMPT,
    "weekend": "A weekend in Paris: the cheapest flight from London (LHR) to Paris (CDG) on "
    "2026-12-12, a hotel in Paris for 2 nights under 200 EUR, and the weather there for 2 days.",
    "weather3": "Compare the weather in Rome, Madrid and Athens for the next 3 days.",
    "currency": "How much are 250 USD in EUR, in GBP and in CHF?",
    "tokyo": "Find the cheapest flight from Munich (MUC) to Tokyo (HND) on 2027-01-10 and a hotel "
    "in Tokyo for 5 nights under 180 EUR a night. Also convert 1000 EUR to JPY.",
    "barcelona": "I fly from Amsterdam (AMS) to Barcelona (BCN) on 2026-12-20. What will the "
    "weather in Barcelona be for 4 days, and which hotel there for 4 nights costs under 120 EUR?",
    "compare": "Which is cheaper on 2026-12-18: flying from Zurich (ZRH) to Lisbon (LIS) or from "
    "Zurich (ZRH) to Porto (OPO)?",
    "vienna": "Plan 2 nights in Vienna: a flight from Berlin (BER) to Vienna (VIE) on 2026-12-05 "
    "and a hotel under 130 EUR a night. Then give me the flight price in USD.",
}
"""Demo tasks for measuring how well a model makes calls (``asynclm bench calls``); ``vienna``
needs a result before its last call."""
