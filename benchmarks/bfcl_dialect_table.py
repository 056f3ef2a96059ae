"""The accuracy table by dialect from per-category ``asynclm bench bfcl --dialect ...`` runs:
BFCL accuracy (BFCL's own checker) and median latency of every run (``<dialect>/<strategy>`` and
``bfcl-prompt``) per category and overall, paired comparisons on the same items (each dialect's
async against its sync; each dialect against CML; against BFCL's own prompt), failure modes and
the cost of an interrupt in tokens, with the command behind every category.

    python benchmarks/bfcl_dialect_table.py benchmarks/results/bfcl-dialects-1.5b-*.json \\
        --out benchmarks/results/bfcl-dialects-1.5b
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

ORDER = ("simple_python", "multiple", "parallel", "parallel_multiple")


def _pairs(items: list[dict[str, Any]], a: str, b: str) -> tuple[int, int, int, int]:
    """(both right, only ``a``, only ``b``, neither) over the items run under both."""
    both = only_a = only_b = neither = 0
    for it in items:
        ra, rb = it["runs"].get(a), it["runs"].get(b)
        if ra is None or rb is None:
            continue
        va, vb = bool(ra.get("valid")), bool(rb.get("valid"))
        both += va and vb
        only_a += va and not vb
        only_b += vb and not va
        neither += not va and not vb
    return both, only_a, only_b, neither


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)" if n else "—"


def table(results: list[dict[str, Any]]) -> str:
    results = sorted(results, key=lambda r: ORDER.index(r["params"]["category"])
                     if r["params"]["category"] in ORDER else 99)
    keys: list[str] = []
    for r in results:
        keys += [k for k in r["params"]["runs"] if k not in keys]
    items = [it for r in results for it in r["items"]]
    model = results[0]["params"]["model"]
    out = [f"# BFCL accuracy by dialect: {model}", "",
           "BFCL's own AST checker on the calls the model made (a failed call the model then "
           "corrected does not count against it). `bfcl-prompt`: BFCL's one-shot prompt, no "
           "tool runs. Every other run executes real (sleeping) tools with the paper's times; "
           "greedy decoding, one in-process model (llama.cpp, 2 threads), native dialects with "
           "results as a tool turn. Runs, one per category:", ""]
    out += [f"- `{r.get('command') or 'n/a'}`" for r in results]
    out += ["", "Table: `python benchmarks/bfcl_dialect_table.py "
            + " ".join(shlex.quote(p) for p in sys.argv[1:]) + "`", ""]
    out += ["| category | items | " + " | ".join(keys) + " |",
            "|---|---|" + "---|" * len(keys)]
    totals = {k: [0, 0] for k in keys}
    for r in results:
        cells = []
        for k in keys:
            s = r["strategies"].get(k)
            if s is None:
                cells.append("—")
                continue
            totals[k][0] += s["n_valid"]
            totals[k][1] += s["n"]
            cells.append(_pct(s["n_valid"], s["n"]))
        out.append(f"| {r['params']['category']} | {r['n_items']} | " + " | ".join(cells) + " |")
    out.append(f"| **all** | {len(items)} | "
               + " | ".join(f"**{_pct(*totals[k])}**" for k in keys) + " |")
    out += ["", "Median latency per item (s), median generated tokens, and the interrupts:", "",
            "| run | " + " | ".join(r["params"]["category"] for r in results)
            + " | tokens (median) | interrupts | tokens/interrupt | forged (runs) |",
            "|---|" + "---|" * (len(results) + 4)]
    for k in keys:
        lat = [f"{r['strategies'][k]['median_s']:.2f}" if k in r["strategies"]
               and r["strategies"][k].get("median_s") is not None else "—" for r in results]
        recs = [it["runs"][k] for it in items if k in it["runs"]]
        toks = [x.get("n_generated") for x in recs if x.get("n_generated") is not None]
        n_int = sum(x.get("n_interrupts") or 0 for x in recs)
        inj = sum(x.get("injected_tokens") or 0 for x in recs)
        forged = sum(1 for x in recs if (x.get("counters") or {}).get("forged"))
        out.append(f"| {k} | " + " | ".join(lat)
                   + f" | {statistics.median(toks) if toks else '—'} | {n_int} | "
                   + (f"{inj / n_int:.1f}" if n_int else "—") + f" | {forged} |")
    out += ["", "Paired on the same items (both right / only the first / only the second / "
            "neither), all categories:", "",
            "| pair | both | only first | only second | neither |", "|---|---|---|---|---|"]
    dialects = []
    for k in keys:
        d, _, s = k.rpartition("/")
        if d and d not in dialects:
            dialects.append(d)
    pairs = [(f"{d}/sync", f"{d}/async") for d in dialects]
    pairs += [(f"{d}/async", "cml/async") for d in dialects if d != "cml"]
    pairs += [(f"{d}/async", "bfcl-prompt") for d in dialects]
    for a, b in pairs:
        if a in keys and b in keys:
            both, oa, ob, nn = _pairs(items, a, b)
            out.append(f"| {a} vs {b} | {both} | {oa} | {ob} | {nn} |")
    out += ["", "Failure modes (the first that applies to a run that was not right), all "
            "categories:", ""]
    modes: list[str] = []
    for it in items:
        for k in keys:
            f = (it["runs"].get(k) or {}).get("failure")
            if f and f not in modes:
                modes.append(f)
    out += ["| run | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
    for k in keys:
        counts = [sum(1 for it in items if (it["runs"].get(k) or {}).get("failure") == m)
                  for m in modes]
        out.append(f"| {k} | " + " | ".join(str(c) for c in counts) + " |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = ap.parse_args(argv)
    results = [json.loads(p.read_text()) for p in args.runs]
    md = table(results)
    Path(f"{args.out}.md").write_text(md)
    summary = {r["params"]["category"]: {k: {"n": v["n"], "n_valid": v["n_valid"],
                                             "median_s": v.get("median_s")}
                                         for k, v in r["strategies"].items()}
               for r in results}
    Path(f"{args.out}.json").write_text(json.dumps(
        {"model": results[0]["params"]["model"], "categories": summary,
         "sources": [str(p) for p in args.runs]}, indent=1))
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
