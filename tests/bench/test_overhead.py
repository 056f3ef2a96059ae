"""The overhead benchmark's pieces, at toy sizes (its figures live in benchmarks/results/)."""

from __future__ import annotations

import asyncio

from asynclm.bench.overhead import (
    _per_call,
    adversarial,
    markdown,
    model_text,
    paired_parse_seconds,
    parse_seconds,
    parser_vs_floor_seconds,
)


def test_per_call_measures_every_call_of_every_counted_session() -> None:
    per_call, per_token = asyncio.run(_per_call(sessions=2, calls=3))
    assert len(per_call) == 6 and len(per_token) == 2
    assert all(x > 0 for x in per_call + per_token)


def test_parse_timings_are_positive_and_paired() -> None:
    assert parse_seconds(model_text(5_000), chunk=64, repeat=1) > 0
    a, b = paired_parse_seconds(adversarial(5_000), adversarial(10_000), repeat=2)
    assert 0 < a and 0 < b
    parser, floor = parser_vs_floor_seconds(model_text(20_000), repeat=1)
    assert 0 < floor < parser  # wrapping chunks is all the floor does


def test_markdown_states_each_target() -> None:
    stats = {"median": 1.0, "p10": 0.5, "p90": 2.0, "n": 3}
    result = {
        "per_call_overhead_us": stats, "asyncio_floor_us": stats, "per_token_loop_us": stats,
        "parser_mb_per_s_by_chunk_chars": {"4": 1.0, "64": 5.0},
        "adversarial": {"bytes_0_5mb_s": 1.0, "bytes_1mb_s": 2.1, "ratio_2x": 2.1},
        "one_event_per_feed_mb_per_s_4_chars": 4.25,
    }
    text = markdown(result, "asynclm bench overhead")
    assert "< 100 µs" in text and "≥ 5 MB/s" in text and "≤ 2.5" in text and "2.10" in text
    assert "one event per 4-char feed" in text and "4.2 MB/s" in text
    result["rounds"] = {"per_call_median_us": [1.0, 3.0], "asyncio_floor_median_us": [1.0, 1.0]}
    text = markdown(result, "asynclm bench overhead")
    assert "medians of 2 rounds 1.0–3.0" in text and "(rounds 1.00–3.00)" in text


def test_rounds_alternate_and_keep_every_sample() -> None:
    from asynclm.bench.overhead import _rounds

    r = asyncio.run(_rounds(rounds=2, sessions=1, calls=3))
    assert len(r["per_call"]) == 6 and len(r["floor"]) == 6
    assert len(r["round_per_call"]) == len(r["round_floor"]) == 2
