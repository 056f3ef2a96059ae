"""Plots of the reproduction (:func:`.reproduce.reproduce`): speedup bars, latency CDFs and the
time breakdown. matplotlib (extra ``plot``) is imported only when a plot is drawn, on a bare
Agg figure (no pyplot, no global backend switch)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOT_FILES", "breakdown_plot", "cdf_plot", "speedup_plot", "write_plots"]

PLOT_FILES = ("bfcl-reproduce-speedup.png", "bfcl-reproduce-cdf.png",
              "bfcl-reproduce-breakdown.png")
ORDER = ("sync-reprefill", "sync-parallel-reprefill", "async-naive", "sync", "sync-parallel",
         "async", "async-write-ahead")
LABEL = {"sync-reprefill": "Sync", "sync-parallel-reprefill": "Sync-Parallel",
         "async-naive": "Async-Naive", "sync": "Sync (cached)",
         "sync-parallel": "Sync-Parallel (cached)", "async": "Async",
         "async-write-ahead": "Async + write-ahead"}
COLOR = {"sync-reprefill": "#9e9e9e", "sync-parallel-reprefill": "#f2a541",
         "async-naive": "#a77dc2", "sync": "#cfcfcf", "sync-parallel": "#f7d08a",
         "async": "#2f7ed8", "async-write-ahead": "#1b4f8a"}
PAPER_KEY = {"sync-parallel-reprefill": "Sync-Parallel", "async-naive": "Async-Naive",
             "async": "Async"}
PARTS = (("decode_s", "decode", "#2f7ed8"), ("prefill_s", "re-prefill (TTFT)", "#e4572e"),
         ("interrupt_s", "interrupt", "#76b041"), ("idle_s", "idle (waiting)", "#cccccc"))


def _figure(w: float, h: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(result: Mapping[str, Any]) -> tuple[list[str], list[str], dict[tuple[str, str], Any]]:
    cells = {(c["category"], c["setting"]["name"]): c for c in result["cells"]}
    cats = list(dict.fromkeys(c["category"] for c in result["cells"]))
    sets = list(dict.fromkeys(c["setting"]["name"] for c in result["cells"]))
    return cats, sets, cells


def _strategies(cell: Mapping[str, Any]) -> list[str]:
    return [s for s in ORDER if s in cell["strategies"]]


def _setting_title(cell: Mapping[str, Any]) -> str:
    st = cell["setting"]
    return f"{st['tpot_ms']:g} ms/token, TTFT {st['ttft_ms']:g} ms ({st['paper_model']})"


def speedup_plot(result: Mapping[str, Any]) -> Figure:
    """Median speedup vs Sync, bars per category and strategy, one panel per setting; the
    paper's figures as black ticks."""
    cats, sets, cells = _grid(result)
    fig = _figure(5.2 * len(sets), 4.2)
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    for ax, sname in zip(axes, sets, strict=True):
        strategies = list(dict.fromkeys(s for c in cats if (c, sname) in cells
                                        for s in _strategies(cells[(c, sname)])))
        width = 0.8 / max(1, len(strategies))
        for j, s in enumerate(strategies):
            xs, ys = [], []
            for i, c in enumerate(cats):
                r = cells.get((c, sname), {}).get("strategies", {}).get(s)
                if r is not None:
                    xs.append(i + (j - (len(strategies) - 1) / 2) * width)
                    ys.append(r.get("speedup_vs_sync") or 0.0)
            ax.bar(xs, ys, width, color=COLOR.get(s), label=LABEL.get(s, s),
                   edgecolor="black", linewidth=0.3)
            for i, c in enumerate(cats):
                paper = cells.get((c, sname), {}).get("paper_speedup", {}).get(
                    PAPER_KEY.get(s, ""))
                if paper:
                    x = i + (j - (len(strategies) - 1) / 2) * width
                    ax.plot([x - width / 2, x + width / 2], [paper, paper], color="black", lw=2)
        ax.axhline(1.0, color="black", lw=0.5)
        ax.set_xticks(range(len(cats)), cats, rotation=15, fontsize=8)
        ax.set_title(_setting_title(next(cells[(c, sname)] for c in cats
                                         if (c, sname) in cells)), fontsize=9)
        ax.set_ylabel("speedup vs Sync (medians)")
    axes[0].legend(fontsize=7, loc="upper left", title="bars: ours; black tick: paper",
                   title_fontsize=7)
    return fig


def cdf_plot(result: Mapping[str, Any]) -> Figure:
    """Latency CDF per strategy; rows: settings, columns: categories."""
    cats, sets, cells = _grid(result)
    fig = _figure(3.6 * len(cats), 2.8 * len(sets))
    axes = fig.subplots(len(sets), len(cats), squeeze=False)
    for r, sname in enumerate(sets):
        for k, c in enumerate(cats):
            ax = axes[r][k]
            cell = cells.get((c, sname))
            if cell is None:
                ax.set_visible(False)
                continue
            for s in _strategies(cell):
                xs = sorted(cell["items"][s]["latency_s"])
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", color=COLOR.get(s), label=LABEL.get(s, s), lw=1.2)
            ax.set_title(f"{c}\n{_setting_title(cell)}", fontsize=8)
            ax.set_xlabel("latency, first to last token (s)", fontsize=7)
            ax.set_ylabel("fraction of items", fontsize=7)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    return fig


def breakdown_plot(result: Mapping[str, Any]) -> Figure:
    """Mean time breakdown per strategy (decode, re-prefill, interrupt, idle: they add up to the
    mean latency) with the tools' wall time beside it; rows: categories, columns: settings."""
    cats, sets, cells = _grid(result)
    fig = _figure(4.4 * len(sets), 3.0 * len(cats))
    axes = fig.subplots(len(cats), len(sets), squeeze=False)
    for r, c in enumerate(cats):
        for k, sname in enumerate(sets):
            ax = axes[r][k]
            cell = cells.get((c, sname))
            if cell is None:
                ax.set_visible(False)
                continue
            strategies = _strategies(cell)
            for i, s in enumerate(strategies):
                b = cell["strategies"][s]["breakdown_mean_s"]
                bottom = 0.0
                for key, label, color in PARTS:
                    v = max(0.0, b[key])
                    ax.bar(i - 0.18, v, 0.36, bottom=bottom, color=color,
                           label=label if i == 0 else None)
                    bottom += v
                ax.bar(i + 0.18, b["tool_s"], 0.36, color="#444444", hatch="//",
                       label="tools running (wall)" if i == 0 else None)
            ax.set_xticks(range(len(strategies)), [LABEL.get(s, s) for s in strategies],
                          rotation=35, ha="right", fontsize=6)
            ax.set_title(f"{c}\n{_setting_title(cell)}", fontsize=8)
            ax.set_ylabel("mean seconds per item", fontsize=7)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=6)
    return fig


def write_plots(result: Mapping[str, Any], folder: Path,
                names: Sequence[str] = PLOT_FILES) -> list[Path]:
    """Write the three plots into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, make in zip(names, (speedup_plot, cdf_plot, breakdown_plot), strict=True):
        path = folder / name
        make(result).savefig(path, format="png")
        out.append(path)
    return out
