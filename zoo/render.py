"""Render rows of dicts as a terminal table, JSON, CSV or markdown."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Dict, List, Optional, Sequence

from zoo.errors import UserError

FORMATS = ("table", "json", "csv", "markdown")
WRAP_WIDTH = 48  # characters per line of a terminal-table column that wraps


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}': use format={'|'.join(FORMATS)}")
    return fmt


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _markdown(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        out.append("| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(out) + "\n"


def _csv(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _cell(r.get(c)) for c in columns})
    return buf.getvalue()


def _table(rows: List[Dict[str, Any]], columns: Sequence[str], title: Optional[str],
           wrap: Sequence[str] = ()) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for c in columns:
        # a wrapped column gets a fixed width (its text's, up to WRAP_WIDTH): rich would otherwise shrink it
        # first, to nothing, when the table is wider than the console
        longest = max([len(c), *(len(_cell(r.get(c))) for r in rows)])
        table.add_column(c, no_wrap=c not in wrap, width=min(longest, WRAP_WIDTH) if c in wrap else None)
    for r in rows:
        table.add_row(*(_cell(r.get(c)) for c in columns))
    console = Console(file=io.StringIO(), width=400, record=True)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines()) + "\n"


def render(
    rows: List[Dict[str, Any]],
    fmt: str,
    table_columns: Sequence[str],
    title: Optional[str] = None,
    document: Optional[Dict[str, Any]] = None,
    wrap: Sequence[str] = (),
) -> str:
    """JSON and CSV carry every column; the terminal table shows ``table_columns``.

    ``document`` wraps the JSON output (``{..., "rows": rows}``) when there is more to say than rows.
    ``wrap``: terminal-table columns whose long text wraps onto more lines instead of being cut short.
    """
    check_format(fmt)
    all_columns = list(dict.fromkeys(k for r in rows for k in r)) or list(table_columns)
    if fmt == "json":
        payload: Any = {**document, "rows": rows} if document is not None else rows
        return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        return _csv(rows, all_columns)
    if fmt == "markdown":
        head = f"### {title}\n\n" if title else ""
        return head + _markdown(rows, table_columns)
    return _table(rows, table_columns, title, wrap)
