"""Summaries of a BFCL result over its items, and merging results over different items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from asynclm.bench._stats import quantile, summary
from asynclm.bench.baselines import strategy as get_strategy
from asynclm.bench.bfcl.bfcl_prompt import BFCL_PROMPT
from asynclm.bench.bfcl.config import split_key
from asynclm.bench.bfcl.records import FAILURE_MODES

__all__ = ["merge_results", "paired", "summarize"]


def _med(xs: Sequence[float | None]) -> float | None:
    ys = [x for x in xs if x is not None]
    return quantile(ys, 0.5) if ys else None


def _base_key(key: str) -> str:
    """The key of the ``sync`` run a run is compared with: the same variant's."""
    label, _ = split_key(key)
    return f"{label}/sync" if label else "sync"


def summarize(
    ids: Sequence[str], records: Mapping[str, Mapping[str, Mapping[str, Any]]],
    strategies: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """Per run key (a strategy, or ``<dialect>/<strategy>``: see
    :func:`~asynclm.bench.bfcl.config.split_key`) over the items ``ids``: latency
    median/p10/p90, speedup vs the same variant's sync, accuracy, well-formed call rate,
    efficiency, the medians of the time breakdown, failure modes
    (:data:`~asynclm.bench.bfcl.records.FAILURE_MODES`), forged results and tokens per
    interrupt."""
    out: dict[str, dict[str, Any]] = {}
    for s in strategies:
        label, strategy = split_key(s)
        b_key = _base_key(s)
        base = {i: records[i][b_key]["latency_s"] for i in ids
                if b_key in records[i] and records[i][b_key].get("latency_s")}
        recs = [records[i][s] for i in ids if s in records[i]]
        ok = [r for r in recs if r.get("latency_s") is not None]
        lat = [r["latency_s"] for r in ok]
        appends = strategy != BFCL_PROMPT and get_strategy(strategy).resume == "append"
        lb_i = {i: records[i][s]["lb_ingest_s"] for i in ids if appends and s in records[i]
                and records[i][s].get("latency_s") and records[i][s].get("lb_ingest_s")}
        eff_i = [records[i][s]["efficiency_ingest"] for i in lb_i]
        st = {k: (None if v != v else v) for k, v in summary(lat).items()}  # NaN -> None
        n_calls = sum(r["n_calls"] for r in recs)
        n_intr = sum(r.get("n_interrupts", 0) for r in recs)
        failures = _count(r["failure"] for r in recs if r.get("failure"))
        row: dict[str, Any] = {
            "variant": label or None,
            "strategy": strategy,
            "n": len(recs),
            "n_errors": len(recs) - len(ok),
            "median_s": st["median"], "p10_s": st["p10"], "p90_s": st["p90"], "mean_s": st["mean"],
            "accuracy": sum(1 for r in recs if r.get("valid")) / len(recs) if recs else None,
            "n_valid": sum(1 for r in recs if r.get("valid")),
            "calls_per_item": n_calls / len(recs) if recs else None,
            "well_formed_rate": (sum(r["n_well_formed"] for r in recs) / n_calls
                                 if n_calls else None),
            "first_token_median_s": _med([r.get("first_token_s") for r in ok]),
            "efficiency_median": _med([r.get("efficiency") for r in ok]),
            "efficiency_p10": (quantile([r["efficiency"] for r in ok if r.get("efficiency")], 0.1)
                               if any(r.get("efficiency") for r in ok) else None),
            "lb_median_s": _med([r.get("lb_s") for r in ok]),
            "efficiency_ingest_median": _med(eff_i),
            "efficiency_ingest_p10": quantile(eff_i, 0.1) if eff_i else None,
            "lb_ingest_median_s": _med(list(lb_i.values())),
            "breakdown_median_s": {
                k: _med([r["breakdown"][k] for r in ok])
                for k in ("decode_s", "prefill_s", "interrupt_s", "idle_s", "tool_s",
                          "tool_busy_s", "overlap_s")
            } if ok else {},
            "tokens_median": _med([r.get("n_generated") for r in ok]),
            "stop_reasons": _count(r.get("stop_reason", "error") for r in recs),
            # protocol behaviour: runs where the model wrote a result/interrupt marker itself,
            # wrote a trap, or ended its text with results still pending
            **{f"runs_{k}": sum(1 for r in recs if r.get("counters", {}).get(k))
               for k in ("forged", "traps", "eos_waits")},
            "forged": sum(r.get("counters", {}).get("forged", 0) for r in recs),
            "interrupts": n_intr,
            "tokens_per_interrupt": (sum(r.get("injected_tokens", 0) for r in recs) / n_intr
                                     if n_intr else None),
            "failures": {k: failures[k] for k in FAILURE_MODES if k in failures},
        }
        if base and strategy != BFCL_PROMPT:
            pairs = [(base[i], records[i][s]["latency_s"]) for i in ids
                     if i in base and s in records[i] and records[i][s].get("latency_s")]
            if pairs and st["median"]:
                row["speedup_vs_sync"] = quantile(list(base.values()), 0.5) / st["median"]
                row["speedup_vs_sync_per_item_median"] = quantile([a / b for a, b in pairs], 0.5)
            # the most any schedule doing this run's work could gain over the measured sync
            ceil = [base[i] / b for i, b in lb_i.items() if i in base]
            if ceil:
                row["bound_vs_sync_per_item_median"] = quantile(ceil, 0.5)
        out[s] = row
    return out


def _count(xs: Any) -> dict[str, int]:
    c: dict[str, int] = {}
    for x in xs:
        c[str(x)] = c.get(str(x), 0) + 1
    return c


def merge_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Several results of the same configuration over different items (e.g. ``--offset`` runs)
    as one: items concatenated, summaries recomputed, wall times added."""
    if not results:
        raise ValueError("nothing to merge")
    first = results[0]

    def setup(r: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in r["params"].items() if k not in ("limit", "offset")}

    if any(setup(r) != setup(first) for r in results[1:]):
        raise ValueError("results differ in more than limit/offset: not mergeable")
    items = [it for r in results for it in r["items"]]
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise ValueError("an item occurs in two results")
    strategies = first["params"]["strategies"]
    records = {it["id"]: it["runs"] for it in items}
    env = dict(first.get("environment", {}))
    env["wall_s"] = sum(r.get("environment", {}).get("wall_s", 0.0) for r in results)
    merged = {k: v for k, v in first.items() if k != "partial"}
    if any(r.get("partial") for r in results):  # a stopped run's checkpoint
        merged["partial"] = True
    return {**merged, "environment": env, "n_items": len(items), "items": items,
            "strategies": summarize(ids, records, strategies),
            "merged_from": [c for r in results for c in r.get("merged_from") or [r.get("command")]]}


def _category(item: Mapping[str, Any]) -> str:
    """An item's category (older results have none: BFCL ids are ``<category>_<n>``)."""
    return str(item.get("category") or str(item["id"]).rsplit("_", 1)[0])


def paired(items: Sequence[Mapping[str, Any]], a: str, b: str) -> dict[str, dict[str, int]]:
    """The items run under both keys ``a`` and ``b``, per category (and ``all``): how many
    were right under both (``both``), only ``a``, only ``b``, or ``neither``."""
    out: dict[str, dict[str, int]] = {}
    total = {"both": 0, "only_a": 0, "only_b": 0, "neither": 0}
    for it in items:
        runs = it["runs"]
        if a not in runs or b not in runs:
            continue
        ra, rb = bool(runs[a].get("valid")), bool(runs[b].get("valid"))
        cell = "both" if ra and rb else "only_a" if ra else "only_b" if rb else "neither"
        out.setdefault(_category(it), dict.fromkeys(total, 0))[cell] += 1
        total[cell] += 1
    if len(out) > 1:  # one category: "all" would say the same
        out["all"] = total
    return out


def comparisons(keys: Sequence[str]) -> list[tuple[str, str]]:
    """The pairs of run keys a dialect comparison reports (:func:`paired`): each variant's
    async against its sync; for each strategy, each pair of variants; each variant's sync (else
    its first strategy) against BFCL's own prompt."""
    split = [split_key(k) for k in keys]
    labels = list(dict.fromkeys(lbl for lbl, s in split if lbl))
    strategies = list(dict.fromkeys(s for lbl, s in split if lbl))
    have = set(keys)
    pairs = [(f"{v}/async", f"{v}/sync") for v in labels]
    pairs += [(f"{v}/{s}", f"{w}/{s}") for s in strategies
              for i, v in enumerate(labels) for w in labels[i + 1:]]
    if BFCL_PROMPT in have:  # a variant's sync (else its first strategy) vs BFCL's prompt
        for v in labels:
            own = [f"{v}/{s}" for s in strategies if f"{v}/{s}" in have]
            if own:
                pairs.append((f"{v}/sync" if f"{v}/sync" in have else own[0], BFCL_PROMPT))
    return [(a, b) for a, b in pairs if a in have and b in have]
