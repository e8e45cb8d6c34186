"""Each artifact's outcome, and the variant x (target, precision) capability grid built from them."""
from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from zoo.calibration import is_generated
from zoo.status import KIT, checks_passed

PASSED, KIT_ONLY, FAILED, NOT_BUILT = "passed", "kit-only", "failed", "not-built"
# A cell holding several artifacts (sources, tags) shows the best of them.
_RANK = {PASSED: 0, KIT_ONLY: 1, FAILED: 2, NOT_BUILT: 3}

Column = Tuple[str, str]  # (target, precision)
# Marks an int8 artifact calibrated on generated images: it passed its checks, but its int8 accuracy is unknown.
GENERATED_CALIBRATION = "generated-calibration"
GENERATED_NOTE = "generated calibration: int8 accuracy unknown"


def outcome(row: Mapping[str, Any]) -> str:
    """passed, kit-only or failed. A build that passed but whose later accuracy or golden check failed
    counts as failed: its reason says so, and a green cell would hide it."""
    if not checks_passed(row["status"]) or str(row.get("reason") or "").startswith("failed:"):
        return FAILED
    if row["status"] == KIT or row.get("build") == "kit only":
        return KIT_ONLY
    return PASSED


def counts(rows: Sequence[Mapping[str, Any]]) -> Dict[str, int]:
    out = {PASSED: 0, FAILED: 0, KIT_ONLY: 0}
    for r in rows:
        out[outcome(r)] += 1
    return out


def columns(precisions: Mapping[str, Sequence[str]], rows: Sequence[Mapping[str, Any]]) -> List[Column]:
    """Every (target, precision) the configuration can build, in its order, then any only the rows have
    (an artifact of a target since removed from the configuration is still shown)."""
    cols = [(t, p) for t, ps in precisions.items() for p in ps]
    cols += sorted({(r["target"], r["precision"]) for r in rows} - set(cols))
    return cols


def column_label(col: Column) -> str:
    target, precision = col
    return target if precision == "fp32" else f"{target} {precision}"


@dataclass
class Cell:
    state: str = NOT_BUILT
    # (outcome, what, source/tag, note): note is GENERATED_NOTE or ""
    lines: List[Tuple[str, str, str, str]] = field(default_factory=list)

    def text(self) -> str:
        """What the cell says, one line per artifact: the reason, or `passed`, and any calibration note."""
        if not self.lines:
            return "not built"
        return "\n".join(f"{what} ({who})" + (f"; {note}" if note else "") for _, what, who, note in self.lines)

    @property
    def generated_calibration(self) -> bool:
        """The cell's colour comes only from artifacts calibrated on generated images."""
        best = [note for s, _, _, note in self.lines if s == self.state]
        return bool(best) and all(best)


def cells(variants: Sequence[str], cols: Sequence[Column],
          rows: Sequence[Mapping[str, Any]]) -> Dict[Tuple[str, Column], Cell]:
    grid = {(v, c): Cell() for v in variants for c in cols}
    for r in rows:
        cell = grid.setdefault((r["variant"], (r["target"], r["precision"])), Cell())
        state = outcome(r)
        what = r.get("reason") or ("passed" if state == PASSED else r["status"])
        note = GENERATED_NOTE if is_generated(r.get("calibration")) else ""
        cell.lines.append((state, what, f"{r['source']}/{r['tag']}", note))
        if _RANK[state] < _RANK[cell.state]:
            cell.state = state
    return grid


def grid_html(variants: Sequence[str], cols: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """The grid as a table: a row per variant (registry order, then any only the artifacts name)."""
    grid = cells(variants, cols, rows)
    names = list(variants) + sorted({v for v, _ in grid} - set(variants))
    head = "".join(f"<th>{escape(column_label(c))}</th>" for c in cols)
    body = []
    for v in names:
        tds = []
        for c in cols:
            cell = grid[(v, c)]
            lines = "".join(f'<div class="{s}">{escape(what)} <span class="who">{escape(who)}</span>'
                            + (f' <span class="calib-note">{escape(note)}</span>' if note else "") + "</div>"
                            for s, what, who, note in cell.lines) or "not built"
            state = cell.state + (f" {GENERATED_CALIBRATION}" if cell.generated_calibration else "")
            tds.append(f'<td class="cell {state}" data-target="{escape(c[0])}" data-precision="{escape(c[1])}"'
                       f' title="{escape(cell.text())}">{lines}</td>')
        body.append(f'<tr data-variant="{escape(v)}"><th scope="row">{escape(v)}</th>{"".join(tds)}</tr>')
    return (f'<table id="grid" class="grid"><thead><tr><th>variant</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')
