"""`zoo results`: every artifact under out_dir in one table (or JSON / CSV / markdown).

    python -m zoo results [out_dir=artifacts] [format=json] [filter='resnext101*'] [source=timm]

Rows come from the manifests (``zoo.results``); the registry only supplies aliases for ``filter`` and
the published top-1 of each checkpoint. Folders that are not complete artifacts are counted on stderr.
"""
from __future__ import annotations

import sys
from typing import Any, Dict

from omegaconf import DictConfig

from zoo.render import check_format, render
from zoo.results import (
    TABLE_COLUMNS, calibration_line, display_row, existing_out_dir, shown_out_dir, gather, registry_facts, skipped_line,
)


def _exact(row: Dict[str, Any]) -> Dict[str, Any]:
    """CSV: floats written in full (the renderer's short form would turn 0.9999998 into 1); the calibration
    record as its one line (JSON carries the record itself)."""
    out = {k: repr(v) if isinstance(v, float) else v for k, v in row.items() if k not in ("timings_s", "bench_points")}
    out["calibration"] = calibration_line(row)
    return out


def run_results(cfg: DictConfig) -> None:
    fmt = check_format(str(cfg.format))
    root = existing_out_dir(cfg)
    source = cfg.source.name if cfg.get("source") is not None else None
    top1, aliases = registry_facts()
    got = gather(root, top1, cfg.get("filter"), source, aliases)
    named = shown_out_dir(cfg, root)
    title = f"{len(got.rows)} artifact(s) under {named}"
    if fmt == "json":
        doc = {"out_dir": named, "filter": cfg.get("filter"), "source": source, "skipped": got.skipped}
        sys.stdout.write(render(got.rows, fmt, TABLE_COLUMNS, title=title, document=doc))
    elif fmt == "csv":
        sys.stdout.write(render([_exact(r) for r in got.rows], fmt, TABLE_COLUMNS))
    elif got.rows:
        shown = [display_row(r) for r in got.rows]
        columns = TABLE_COLUMNS
        # With no int8 row the terminal's fixed width is better spent on the other columns; with one, its
        # calibration line is a warning to read whole (wrapped), not to cut at the column's edge.
        if fmt == "table" and not any(r["calibration"] for r in shown):
            columns = [c for c in TABLE_COLUMNS if c != "calibration"]
        sys.stdout.write(render(shown, fmt, columns, title=title, wrap=("calibration",)))
    footer = [f"{len(got.rows)} artifact(s) under {named}"]
    if cfg.get("filter") or source:
        footer.append(f"filter={cfg.get('filter')} source={source}")
    if got.skipped:
        footer.append(skipped_line(got.skipped) + " (format=json lists them; `python -m zoo gc` cleans them up)")
    print("; ".join(footer), file=sys.stderr)
