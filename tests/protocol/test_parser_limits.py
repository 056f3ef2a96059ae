"""Resource limits: linear time on adversarial streams, bounded calls, chunking at the limit."""

from __future__ import annotations

import random
import time
from itertools import pairwise

import pytest

from asynclm.protocol import MAX_CALL_CHARS, Call, Event, Forged, MalformedCall, Parser, Text


def adversarial(scale: int) -> str:
    """What makes naive tool-call parsers slow, about 0.5 MB per unit of ``scale``.

    Constructs that may grow without bound (text, marker prefixes, trap whitespace, interrupt
    payloads, calls over the size limit) grow with ``scale``, so work that is quadratic in a
    block's size shows; bounded ones (calls under the limit) are repeated ``scale`` times.
    """
    k = scale
    return "".join(
        [
            "[" * 30000 * k,
            "[CAL" * 8000 * k + " ",
            "[CALL]" + "[EN" * 5000 * k + "[END] ",
            "[TRAP]" + " \n" * 15000 * k + "ok ",
            "[INTR] c1 [HEAD] " + "payload " * 5000 * k + " [END] ",
            "[CALL] f(a=[" + "1,\n" * 40000 * k + "]) [END] ",  # over the limit
            '[CALL] f(a="' + "\\" * 30000 * k + '") [END] ',  # escapes
            "[CALL] g(x)" + "\n" * 30000 * k + " [END] ",  # newlines after a failed parse
            ("[CALL] f(\n" + "\n" * 200 + "a=1)\n") * 20 * k,  # forged newline
            ("[CALL] f(a=[" + "1," * 8000 + "])\n[END] ") * 2 * k,  # a big body parsed
            ("[CALL] " + "(" * 40 + ")" * 40 + "\n" * 10 + "[END] ") * 20 * k,
            "words " * 15000 * k,
        ]
    )


def feed_all(stream: str, chunk: int, *, transcript: bool = False) -> tuple[float, float]:
    """Total and longest single-feed time."""
    p = Parser(transcript=transcript)
    worst = 0.0
    t0 = time.perf_counter()
    for i in range(0, len(stream), chunk):
        t = time.perf_counter()
        p.feed(stream[i : i + chunk])
        worst = max(worst, time.perf_counter() - t)
    p.close()
    return time.perf_counter() - t0, worst


def assert_linear(chunk: int, *, transcript: bool) -> None:
    """Twice the input (see :func:`adversarial`) takes at most 2.5x the time; min of 3
    interleaved runs each. Timing on a shared machine is noisy, so a failing measurement is
    repeated once; quadratic work (4x) fails both."""
    small, big = adversarial(1), adversarial(2)
    t1 = t2 = 0.0
    for _ in range(3):
        t1 = t2 = float("inf")
        worst = 0.0
        for _ in range(3):
            a, w1 = feed_all(small, chunk, transcript=transcript)
            b, w2 = feed_all(big, chunk, transcript=transcript)
            t1, t2, worst = min(t1, a), min(t2, b), max(worst, w1, w2)
        assert worst < 0.5, worst  # no single feed blocks an event loop for long
        if t2 <= 2.5 * t1:
            return
    raise AssertionError(f"time for 2x input {t2:.3f}s > 2.5 x {t1:.3f}s")


def test_adversarial_sizes() -> None:
    assert 400_000 < len(adversarial(1)) < 700_000
    assert len(adversarial(2)) > 1_000_000 - 200_000


def test_linear_time_on_adversarial_stream() -> None:
    assert_linear(64, transcript=False)


GROWING_BLOCKS = {
    "text": (lambda n: "words, [1, 2] and <b>x</b> -> y\n" * (n // 32), False),
    "open brackets": (lambda n: "[" * n, False),
    "marker prefixes": (lambda n: "[CAL" * (n // 4), False),
    "trap whitespace": (lambda n: "[TRAP]" + " \n" * (n // 2) + "x", False),
    "interrupt payload": (
        lambda n: "[INTR] c1 [HEAD] " + "payload [x] " * (n // 12) + " [END]",
        True,
    ),
    "call over the limit": (lambda n: "[CALL] f(a=[" + "1,\n" * (n // 3) + "]) [END]", False),
    "call over the limit, transcript": (lambda n: "[CALL] " + "x -> [" * (n // 6) + "[END]", True),
}


@pytest.mark.parametrize("name", list(GROWING_BLOCKS))
def test_one_growing_block_is_linear(name: str) -> None:
    """A single block (or text run) of 2x the size, fed 16 characters at a time, takes at most
    3x the time (a re-read of what a block has accumulated would take 4x): nothing re-reads.
    Best of three, up to three tries, so that a busy machine does not fail it."""
    build, transcript = GROWING_BLOCKS[name]
    small, big = build(100_000), build(200_000)
    t1 = t2 = 0.0
    for _ in range(3):
        t1 = t2 = float("inf")
        for _ in range(3):
            t1 = min(t1, feed_all(small, 16, transcript=transcript)[0])
            t2 = min(t2, feed_all(big, 16, transcript=transcript)[0])
        if t2 <= 3.0 * t1:
            return
    raise AssertionError(f"{name}: time for 2x input {t2:.3f}s > 3 x {t1:.3f}s")


def _events(stream: str, cuts: list[int]) -> list[Event]:
    p = Parser()
    out: list[Event] = []
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in pairwise(bounds):
        got = p.feed(stream[a:b])
        out += got
        if any(isinstance(e, Forged) for e in got):
            break
    else:
        out += p.close()
    merged: list[Event] = []
    for e in out:
        if isinstance(e, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + e.text, merged[-1].start, e.end)
        else:
            merged.append(e)
    return merged


def test_limit_boundary_is_chunking_independent() -> None:
    """Around MAX_CALL_CHARS the verdict (too long or not, forged or not) never depends on
    how the stream was cut."""
    rng = random.Random(3)
    head = "[CALL] f(a='"
    close = "')"
    for delta in (-3, -2, -1, 0, 1, 2):
        filler = "x" * (MAX_CALL_CHARS - len(" f(a='") - len(close) + delta)
        for tail in (" [END] after", "\n[END]", " -> 5 [END]", "[END]"):
            stream = head + filler + close + tail
            whole = _events(stream, [])
            assert isinstance(whole[1], (Call, MalformedCall, Forged)), whole
            for _ in range(8):
                k = len(head) + len(filler) + rng.randint(-4, 8)
                cuts = [k, k + rng.randint(1, 3), rng.randint(0, len(stream))]
                assert _events(stream, cuts) == whole, (delta, tail, cuts)


def test_call_just_under_the_limit_parses() -> None:
    body = "f(a='" + "x" * (MAX_CALL_CHARS - 100) + "')"
    (_, call) = _events("[CALL] " + body + " [END]", [])
    assert isinstance(call, Call) and len(call.args["a"]) == MAX_CALL_CHARS - 100
    (_, bad) = _events("[CALL] " + body + "x" * 200 + " [END]", [])
    assert isinstance(bad, MalformedCall) and "too long" in bad.reason
