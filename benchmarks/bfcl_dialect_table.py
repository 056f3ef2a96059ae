"""The accuracy table by dialect from per-category ``asynclm bench bfcl --dialect ...`` runs:
BFCL accuracy (BFCL's own checker) and median latency of every run (``<dialect>/<strategy>`` and
``bfcl-prompt``) per category and overall, paired comparisons on the same items (each dialect's
async against its sync; each dialect against CML; against BFCL's own prompt), failure modes and
the cost of an interrupt in tokens, with the command behind every category.

    python benchmarks/bfcl_dialect_table.py benchmarks/results/bfcl-dialects-1.5b-*.json \\
        --out benchmarks/results/bfcl-dialects-1.5b

Several runs of one category (``--offset`` parts, a dialect run later) are joined by item id,
in the order given: where two files hold the same run of the same item, the later one counts,
and the report says how many such re-runs gave the same transcript as the earlier.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ORDER = ("simple_python", "multiple", "parallel", "parallel_multiple")


def _pairs(items: list[dict[str, Any]], a: str, b: str) -> tuple[int, int, int, int]:
    """(both right, only ``a``, only ``b``, neither) over the items run under both, all
    categories (:func:`asynclm.bench.bfcl.summary.paired`)."""
    from asynclm.bench.bfcl.summary import paired

    by_cat = paired(items, a, b)
    t = by_cat.get("all") or next(iter(by_cat.values()), {})
    return t.get("both", 0), t.get("only_a", 0), t.get("only_b", 0), t.get("neither", 0)


def join(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One result per category: the runs of every file of that category joined by item id (a
    later file's run of an item replaces an earlier one's), items in BFCL's order, summaries
    recomputed. Also a line per category that re-ran runs, with how many transcripts and
    verdicts came out the same."""
    from asynclm.bench.bfcl.summary import summarize

    by_cat: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_cat.setdefault(r["params"]["category"], []).append(r)
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for cat, parts in by_cat.items():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        items: dict[str, dict[str, Any]] = {}
        keys: list[str] = []
        same = verdict = rerun = 0
        for r in parts:
            keys += [k for k in r["params"]["runs"] if k not in keys]
            for it in r["items"]:
                have = items.setdefault(it["id"], {**it, "runs": {}})
                for k, run in it["runs"].items():
                    old = have["runs"].get(k)
                    if old is not None:
                        rerun += 1
                        same += old.get("transcript") == run.get("transcript")
                        verdict += bool(old.get("valid")) == bool(run.get("valid"))
                    have["runs"][k] = run
        ordered = sorted(items.values(), key=lambda it: int(str(it["id"]).rsplit("_", 1)[1]))
        ids = [it["id"] for it in ordered]
        joined = {**parts[0], "items": ordered, "n_items": len(ordered),
                  "params": {**parts[0]["params"], "runs": keys},
                  "strategies": summarize(ids, {it["id"]: it["runs"] for it in ordered}, keys),
                  "commands": [r.get("command") or "n/a" for r in parts]}
        out.append(joined)
        if rerun:
            notes.append(f"{cat}: {rerun} runs of an item ran in two files; the later counts; "
                         f"{same} gave the same transcript, {verdict} the same verdict.")
    return out, notes


def _ran(run: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The calls a tool ran: neither an error nor a verbatim repeat that the runtime answered
    from the earlier call's result without running the tool (``exec_s`` None)."""
    return [(c["fn"], c["args"]) for c in run.get("calls") or []
            if not c.get("error") and c.get("exec_s") is not None]


def ran_accuracy(results: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Per runtime run key: ``[right, items]`` by BFCL's checker on the calls a tool ran
    (:func:`_ran`) instead of every call the model wrote. Needs BFCL's package."""
    from asynclm.bench.bfcl.checker import check
    from asynclm.bench.bfcl.data import load

    out: dict[str, list[int]] = {}
    for r in results:
        by_id = {it.id: it for it in load(r["params"]["category"])}
        for it in r["items"]:
            for k, run in it["runs"].items():
                if k == "bfcl-prompt":
                    continue  # runs nothing
                ok, _ = check(by_id[it["id"]], _ran(run))
                acc = out.setdefault(k, [0, 0])
                acc[0] += ok
                acc[1] += 1
    return out


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / n:.0f}%)" if n else "—"


def table(results: list[dict[str, Any]], notes: Sequence[str] = (),
          ran: dict[str, list[int]] | None = None) -> str:
    """The Markdown report; ``ran``: :func:`ran_accuracy` of the same results, if wanted."""
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
           "results as a tool turn. Runs (one or more per category):", ""]
    out += [f"- `{c}`" for r in results for c in r.get("commands") or [r.get("command") or "n/a"]]
    if notes:
        out += ["", "How the files were joined:", ""] + [f"- {n}" for n in notes]
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
        d = k.rpartition("/")[0]
        if d and d not in dialects:
            dialects.append(d)
    pairs = [(f"{d}/sync", f"{d}/async") for d in dialects]
    pairs += [(f"{d}/async", "cml/async") for d in dialects if d != "cml"]
    pairs += [(f"{d}/async", "bfcl-prompt") for d in dialects]
    for a, b in pairs:
        if a in keys and b in keys:
            both, oa, ob, nn = _pairs(items, a, b)
            out.append(f"| {a} vs {b} | {both} | {oa} | {ob} | {nn} |")
    if ran is not None:
        out += ["", "The same runs counting only the calls a tool ran: a verbatim repeat of an "
                "earlier call, which the runtime answers from that call's result without "
                "running the tool again (its payload says so), is left out; the tables above count "
                "it as BFCL would, as a second call:", "",
                "| run | right (calls a tool ran) | right (every call written) |", "|---|---|---|"]
        for k in keys:
            if k in ran:
                out.append(f"| {k} | {_pct(*ran[k])} | {_pct(*totals[k])} |")
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
    ap.add_argument("--drop", action="append", default=[], metavar="FILE:RUN",
                    help="leave run RUN (e.g. hermes-bare/sync) of FILE out (a run made by "
                         "older code that a later file does not replace)")
    args = ap.parse_args(argv)
    loaded = dict(zip(map(str, args.runs), (json.loads(p.read_text()) for p in args.runs),
                      strict=True))
    dropped = []
    for spec in args.drop:
        path, _, key = spec.rpartition(":")
        if path not in loaded:
            ap.error(f"--drop {spec}: {path} is not one of the runs")
        r = loaded[path]
        r["params"]["runs"] = [k for k in r["params"]["runs"] if k != key]
        for it in r["items"]:
            it["runs"].pop(key, None)
        r["strategies"].pop(key, None)
        dropped.append(f"{path}: {key} left out (made by older code; not replaced by a later "
                       "file)")
    results, notes = join(list(loaded.values()))
    md = table(results, dropped + notes, ran_accuracy(results))
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
