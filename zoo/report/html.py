"""The page: header, capability grid, sortable results matrix and the plots, in one HTML file.

Everything is inline (style, script, SVG): the file opens from disk or an e-mail attachment with no
network, and nothing in it is fetched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any, Dict, List, Mapping, Optional, Sequence

from zoo.report import grid, plots
from zoo.results import TABLE_COLUMNS, skipped_line

# Which row field explains a column's value, shown as the cell's tooltip.
_TOOLTIPS = {"variant": "folder", "params_published": "params_published_doc",
             "gmacs_published": "gmacs_published_doc", "top1_published": "top1_published_doc",
             "target_cosine": "target_parity", "reason": "reason", "stages": "stages"}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } code { font-size: 0.95em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
#results th { cursor: pointer; background: #f3f3f3; white-space: nowrap; user-select: none; }
#results th[aria-sort=ascending]::after { content: " \\25B2"; }
#results th[aria-sort=descending]::after { content: " \\25BC"; }
.scroll { overflow-x: auto; }
#results td { white-space: nowrap; }
#results td.num { text-align: right; font-variant-numeric: tabular-nums; }
.grid td { min-width: 7em; }
.grid .who { color: #555; font-size: 10px; }
td.passed, .key.passed { background: #c7e9c0; }
td.failed, .key.failed { background: #fcbba1; }
td.kit-only, .key.kit-only { background: #fdd49e; }
td.not-built, .key.not-built { background: #eeeeee; color: #666; }
/* int8 calibrated on generated images: keeps its state's colour, hatched and outlined so it never reads as plain green */
td.generated-calibration, .key.generated-calibration {
  background-image: repeating-linear-gradient(135deg, transparent 0 6px, rgba(255, 190, 0, 0.55) 6px 12px);
  outline: 2px dashed #b8860b; outline-offset: -2px; }
.grid .calib-note { display: block; color: #7a4500; font-weight: bold; font-size: 10px; }
.key { padding: 1px 6px; border: 1px solid #ccc; }
figure { margin: 0 0 2em; } figcaption { color: #444; max-width: 60em; }
svg { max-width: 100%; height: auto; }
"""

# Click a header to sort by it; again to reverse. Numbers sort by value (data-sort holds the exact
# number behind the formatted text); empty cells stay last either way.
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  heads.forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var num = th.dataset.type === "num";
      var body = table.tBodies[0];
      var key = function (row) {
        var td = row.cells[col];
        return td.dataset.sort !== undefined ? td.dataset.sort : td.textContent.trim();
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var d = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return asc ? d : -d;
      });
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass
class Report:
    """What the page shows; the command gathers it, nothing here reads files."""

    out_dir: str
    generated: datetime
    rows: List[Dict[str, Any]]
    skipped: List[Dict[str, str]]
    checkpoints: List[Dict[str, Any]]  # `zoo list` rows: the registry's published numbers
    variants: List[str]  # the registry's variants in the selection
    precisions: Mapping[str, Sequence[str]]  # target -> precisions its configuration lists
    selection: Dict[str, Optional[str]] = field(default_factory=dict)  # filter / source, as asked


def _numeric(rows: Sequence[Mapping[str, Any]], col: str) -> bool:
    vals = [r.get(col) for r in rows if r.get(col) is not None]
    return bool(vals) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals)


def results_table(rows: Sequence[Dict[str, Any]]) -> str:
    """The matrix of `zoo results`, formatted as `zoo results` shows it, one row per artifact."""
    from zoo.results import display_row  # the terminal's number formatting, so both read alike

    numeric = {c: _numeric(rows, c) for c in TABLE_COLUMNS}
    num = ' data-type="num"'
    head = "".join(f'<th scope="col"{num if numeric[c] else ""}>{escape(c)}</th>' for c in TABLE_COLUMNS)
    body = []
    for row in rows:
        shown = display_row(row)
        tds = []
        for c in TABLE_COLUMNS:
            attrs = ""
            if numeric[c]:
                raw = row.get(c)
                attrs += f' class="num" data-sort="{"" if raw is None else repr(raw)}"'
            tip = row.get(_TOOLTIPS.get(c, ""))
            if tip:
                attrs += f' title="{escape(str(tip))}"'
            text = "" if shown.get(c) is None else str(shown[c])
            tds.append(f"<td{attrs}>{escape(text)}</td>")
        key = "/".join(str(row[k]) for k in ("variant", "source", "tag", "target", "precision"))
        body.append(f'<tr data-key="{escape(key)}" data-outcome="{grid.outcome(row)}">{"".join(tds)}</tr>')
    return (f'<table id="results" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _header(rep: Report) -> str:
    n = grid.counts(rep.rows)
    chosen = ", ".join(f"{k}={v}" for k, v in rep.selection.items() if v)
    skipped = ""
    if rep.skipped:
        items = "".join(f"<li><code>{escape(s['path'])}</code>: {escape(s['reason'])}</li>" for s in rep.skipped)
        skipped = f"<details><summary>{escape(skipped_line(rep.skipped))}</summary><ul>{items}</ul></details>"
    return (
        "<h1>ResNeXt zoo report</h1>"
        f'<p>generated <time datetime="{rep.generated.isoformat()}">{escape(rep.generated.strftime("%Y-%m-%d %H:%M:%S %Z"))}'
        f"</time> from <code>{escape(rep.out_dir)}</code>{escape(f' ({chosen})' if chosen else '')}</p>"
        f'<p id="counts"><b id="n-artifacts">{len(rep.rows)}</b> artifact(s): '
        f'<span class="key passed"><b id="n-passed">{n[grid.PASSED]}</b> passed</span> '
        f'<span class="key failed"><b id="n-failed">{n[grid.FAILED]}</b> failed</span> '
        f'<span class="key kit-only"><b id="n-kit-only">{n[grid.KIT_ONLY]}</b> kit only</span>; '
        f"registry: {len(rep.variants)} variant(s), {len(rep.checkpoints)} checkpoint(s)</p>{skipped}"
    )


def vendor_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The vendors' published speed for the variants built here: another machine's figures, never a ratio."""
    from zoo.bench.published import HARDWARE_NOTE, vendor_figures

    out = []
    for variant in sorted({r["variant"] for r in rows}):
        for f in vendor_figures(variant):
            out.append("<tr>" + "".join(f"<td>{escape('' if f[k] is None else str(f[k]))}</td>" for k in _VENDOR) + "</tr>")
            out[-1] = out[-1].replace("<tr>", f"<tr><td>{escape(variant)}</td>", 1)
    if not out:
        return ""
    head = "".join(f"<th>{escape(k)}</th>" for k in ("variant", *_VENDOR))
    return (f'<h3 id="vendor-speed">Vendors\' published speed</h3><p>{escape(HARDWARE_NOTE)}.</p>'
            f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(out)}</tbody></table>')


_VENDOR = ("target", "device", "sdk", "precision", "batch", "fps", "latency_ms", "fps_note", "published_in")


def _figure(fid: str, svg: str, caption: str) -> str:
    return f'<figure id="{fid}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def page(rep: Report) -> str:
    cols = grid.columns(rep.precisions, rep.rows)
    drawn = plots.drawable(rep.checkpoints)
    left_out = [f"{c['variant']} {c['source']}:{c['tag']}" for c in rep.checkpoints if c not in drawn]
    not_drawn = (f" Not drawn ({len(left_out)}: no published top-1): {', '.join(left_out)}."
                 if left_out else "")
    figures = [
        _figure("plot-accuracy", plots.accuracy_vs_compute(rep.checkpoints),
                "Every checkpoint in the registry selection, built or not: published top-1 against the "
                "MACs counted from its architecture at its input size (one convention for all: the sources' "
                "own tables mix MACs and FLOPs). The dashed line is the Pareto front: no other checkpoint "
                "is as accurate for less compute." + not_drawn),
        _figure("plot-size", plots.size_and_time(rep.rows, cols),
                "Bars: median per target; dots: each artifact. Time is the sum of every stage of the build."),
        _figure("plot-parity", plots.parity(rep.rows, cols),
                "Worst max-abs difference over the gated parity sets of each artifact."),
        _figure("plot-speed", plots.speed(rep.rows),
                "zoo bench on the machine that wrote this page: a point per artifact and batch size. The dashed "
                "line is the Pareto front: no other point has a lower median latency and at least as much "
                "throughput. The vendors' published figures are in the table below, from other hardware."),
    ]
    legend = " ".join(f'<span class="key {s}">{t}</span>' for s, t in (
        (grid.PASSED, "passed"), (grid.FAILED, "failed: the checks named"),
        (grid.KIT_ONLY, "kit only: compiler not run here"), (grid.NOT_BUILT, "not built"),
        (f"{grid.PASSED} {grid.GENERATED_CALIBRATION}", grid.GENERATED_NOTE)))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>ResNeXt zoo report: {escape(rep.out_dir)}</title><style>{_STYLE}</style></head><body>"
        f"{_header(rep)}"
        f'<h2>Capability grid</h2><p>{legend}</p><div class="scroll">{grid.grid_html(rep.variants, cols, rep.rows)}</div>'
        f"<h2>Results</h2><p>One row per artifact; click a column header to sort.</p>"
        f'<div class="scroll">{results_table(rep.rows)}</div>'
        f"<h2>Plots</h2>{''.join(figures)}{vendor_table(rep.rows)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
