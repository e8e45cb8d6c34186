"""The report's figures, drawn with matplotlib's SVG backend and returned as inline ``<svg>`` text.

Each function takes plain rows (``zoo list`` rows for the registry, ``zoo results`` rows for artifacts)
and returns one SVG; with nothing to draw it returns a small figure that says so instead of failing.
"""
from __future__ import annotations

import io
import logging
import re
import statistics
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from zoo.errors import UserError

try:
    import matplotlib
    # Its font cache is built on first use and says so at INFO; the command's output is the page's path.
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    from matplotlib.figure import Figure  # the Figure API: no pyplot, no GUI backend, no global state
    from matplotlib.ticker import NullFormatter
except ImportError:  # pragma: no cover - exercised only without the extra
    matplotlib = None

Column = Tuple[str, str]
# Exact zeros cannot sit on a log axis: they are drawn on this floor, and the caption says so.
LOG_FLOOR = 1e-10
_MARKERS = ("o", "s", "^", "D", "v")  # one per source, besides its colour


def _require() -> None:
    if matplotlib is None:
        raise UserError("zoo report draws its plots with matplotlib: pip install 'resnext-zoo[report]'")


def to_svg(fig: "Figure", salt: str) -> str:
    """The figure as an ``<svg>`` element. Text stays text (searchable, no glyph paths), the element ids
    are salted per figure so several SVGs in one page never share an id, and no date is embedded."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # inline SVG needs no XML declaration or DOCTYPE
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def no_data(title: str, why: str, salt: str) -> str:
    _require()
    fig = Figure(figsize=(7, 1.4))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    ax.text(0.5, 0.4, f"no data: {why}", ha="center", va="center", fontsize=11, color="#666666")
    return to_svg(fig, salt)


def pareto_front(points: Sequence[Tuple[float, float]]) -> List[int]:
    """Indices of the points no other point beats (no more compute and at least as accurate, one of them
    strictly), in order of compute."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: List[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def drawable(checkpoints: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
    """The checkpoints that publish a top-1: the others have no place on the plot."""
    return [c for c in checkpoints if c.get("top1") is not None and c.get("arch_macs_g")]


def accuracy_vs_compute(checkpoints: Sequence[Mapping[str, Any]]) -> str:
    """Published top-1 against MACs, a point per checkpoint, with the Pareto front.

    MACs are counted from the architecture at the checkpoint's input size, not taken from the
    sources' tables: those mix MACs and FLOPs (some count one multiply-accumulate as two FLOPs), and
    a front drawn across conventions would compare unlike numbers."""
    _require()
    title = "Published top-1 against MACs"
    pts = drawable(checkpoints)
    if not pts:
        return no_data(title, "no checkpoint in the registry selection publishes a top-1", "accuracy")
    fig = Figure(figsize=(10, 6))
    ax = fig.add_subplot()
    sources = sorted({c["source"] for c in pts})
    colour = {s: f"C{i % 10}" for i, s in enumerate(sources)}
    for i, s in enumerate(sources):
        mine = [c for c in pts if c["source"] == s]
        ax.scatter([c["arch_macs_g"] for c in mine], [c["top1"] for c in mine], marker=_MARKERS[i % len(_MARKERS)],
                   s=28, label=s, color=colour[s], zorder=3)
    front = [pts[i] for i in pareto_front([(c["arch_macs_g"], c["top1"]) for c in pts])]
    ax.plot([c["arch_macs_g"] for c in front], [c["top1"] for c in front], drawstyle="steps-post",
            color="#444444", linestyle="--", linewidth=1, label="Pareto front", zorder=2)
    for c in pts:
        ax.annotate(f"{c['variant'].removeprefix('resnext')} {c['tag']}", (c["arch_macs_g"], c["top1"]),
                    xytext=(4, 3), textcoords="offset points", fontsize=6, color=colour[c["source"]])
    ax.set_xscale("log")
    ax.margins(x=0.12)  # room for the rightmost point's label inside the axes
    lo, hi = min(c["arch_macs_g"] for c in pts), max(c["arch_macs_g"] for c in pts)
    ticks = [t for t in (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 60, 80, 100, 150, 200, 300, 500, 1000)
             if lo / 1.2 <= t <= hi * 1.2]
    if len(ticks) >= 2:  # plain numbers read better than 10^1 on a range this short
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("GMACs, counted from the architecture at the checkpoint's input size")
    ax.set_ylabel("published top-1, %")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside: the points fill the axes
    return to_svg(fig, "accuracy")


def _by_column(rows: Sequence[Mapping[str, Any]], order: Sequence[Column],
               value: Callable[[Mapping[str, Any]], Optional[float]]) -> Dict[Column, List[float]]:
    """Values per (target, precision), in the grid's column order; rows without a value are left out."""
    out: Dict[Column, List[float]] = {}
    for col in order:
        vals = [value(r) for r in rows if (r["target"], r["precision"]) == col]
        vals = [float(v) for v in vals if v is not None]
        if vals:
            out[col] = vals
    return out


def _label(col: Column) -> str:
    return col[0] if col[1] == "fp32" else f"{col[0]}\n{col[1]}"


def _strip(ax: Any, groups: Dict[Column, List[float]], unit: str, title: str) -> None:
    """A bar at each target's median and a dot per artifact: readable for one artifact or hundreds."""
    xs = range(len(groups))
    ax.bar(xs, [statistics.median(v) for v in groups.values()], color="#9ecae1", width=0.6, label="median")
    for x, vals in zip(xs, groups.values()):
        ax.scatter([x] * len(vals), vals, color="#08519c", s=14, zorder=3)
    ax.set_xticks(list(xs), [_label(c) for c in groups], fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)


def size_and_time(rows: Sequence[Mapping[str, Any]], order: Sequence[Column]) -> str:
    """Artifact size and conversion time (every stage summed) per target."""
    _require()
    title = "Artifact size and conversion time per target"
    size = _by_column(rows, order, lambda r: r.get("size_mib"))
    secs = _by_column(rows, order, lambda r: r.get("time_s"))
    if not size and not secs:
        return no_data(title, "no built artifact under out_dir", "size")
    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    _strip(left, size, "MiB", "artifact size")
    _strip(right, secs, "s", "conversion time (all stages)")
    fig.suptitle(title, fontsize=11)
    return to_svg(fig, "size")


def parity(rows: Sequence[Mapping[str, Any]], order: Sequence[Column]) -> str:
    """The worst max-abs difference per artifact: canonical ONNX against the source framework, and the
    target artifact against the canonical ONNX (log scale; exact zeros sit on LOG_FLOOR)."""
    _require()
    title = "Parity: worst max-abs difference per target (log scale)"
    series = [("source_max_abs", "canonical ONNX vs source framework", "o", -0.12),
              ("target_max_abs", "target vs canonical ONNX", "^", 0.12)]
    groups = {key: _by_column(rows, order, lambda r, k=key: r.get(k)) for key, *_ in series}
    cols = [c for c in order if any(c in g for g in groups.values())]
    if not cols:
        return no_data(title, "no artifact under out_dir records parity numbers", "parity")
    fig = Figure(figsize=(10, 4))
    ax = fig.add_subplot()
    for key, name, marker, dx in series:
        xs, ys = [], []
        for x, col in enumerate(cols):
            for v in groups[key].get(col, []):
                xs.append(x + dx)
                ys.append(max(v, LOG_FLOOR))
        if xs:
            ax.scatter(xs, ys, marker=marker, s=30, label=name, zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(cols)), [_label(c) for c in cols], fontsize=8)
    ax.set_xlim(-0.6, len(cols) - 0.4)
    ax.set_ylabel(f"max |difference| (0 drawn at {LOG_FLOOR:g})")
    ax.set_title(title, fontsize=11)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return to_svg(fig, "parity")


def speed(rows: Sequence[Mapping[str, Any]]) -> str:
    """Throughput against median latency on this machine (``zoo bench``), one panel per variant, a point per
    artifact and batch, with the Pareto front: no other point is faster per call and at least as high in
    throughput."""
    _require()
    title = "Throughput against latency, measured on this machine"
    measured = [r for r in rows if r.get("bench_points")]
    if not measured:
        return no_data(title, "no artifact here was measured on this machine (python -m zoo bench model=...)", "speed")
    variants = sorted({r["variant"] for r in measured})
    fig = Figure(figsize=(10, 4.5 * len(variants)))
    for k, variant in enumerate(variants):
        ax = fig.add_subplot(len(variants), 1, k + 1)
        pts = [(r, p) for r in measured if r["variant"] == variant for p in r["bench_points"]]
        labels = sorted({f"{r['target']} {r['precision']} ({r['source']})" for r, _ in pts})
        for i, label in enumerate(labels):
            mine = [(r, p) for r, p in pts if f"{r['target']} {r['precision']} ({r['source']})" == label]
            ax.scatter([p["p50_ms"] for _, p in mine], [p["img_s"] for _, p in mine], s=30, label=label,
                       marker=_MARKERS[i % len(_MARKERS)], color=f"C{i % 10}", zorder=3)
            for _, p in mine:
                ax.annotate(f"bs{p['batch']}", (p["p50_ms"], p["img_s"]), xytext=(4, 3), textcoords="offset points",
                            fontsize=6, color=f"C{i % 10}")
        front = [pts[i] for i in pareto_front([(p["p50_ms"], p["img_s"]) for _, p in pts])]
        ax.plot([p["p50_ms"] for _, p in front], [p["img_s"] for _, p in front], drawstyle="steps-post",
                color="#444444", linestyle="--", linewidth=1, label="Pareto front", zorder=2)
        ax.set_xscale("log")
        ax.set_xlabel("median latency of one call, ms (log)")
        ax.set_ylabel("images / s")
        ax.set_title(f"{title}: {variant}", fontsize=11)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return to_svg(fig, "speed")
