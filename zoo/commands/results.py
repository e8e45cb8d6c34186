"""`zoo results`: every artifact under out_dir in one table (or JSON / CSV / markdown).

    python -m zoo results [out_dir=artifacts] [format=json] [filter='resnext101*'] [source=timm]

Rows come from the manifests (``zoo.results``); the registry only supplies aliases for ``filter`` and
the published top-1 of each checkpoint. Folders that are not complete artifacts are counted on stderr.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

from omegaconf import DictConfig

from zoo.errors import UserError
from zoo.render import check_format, render
from zoo.results import TABLE_COLUMNS, PublishedTop1, calibration_line, gather, skipped_line


def existing_out_dir(cfg: DictConfig) -> Path:
    root = Path(str(cfg.out_dir)).expanduser()
    if not root.is_dir():
        raise UserError(f"out_dir={cfg.out_dir}: no such folder; build artifacts with `python -m zoo convert` "
                        f"or point out_dir at the folder that holds them")
    return root


def registry_facts() -> Tuple[PublishedTop1, Dict[str, List[str]]]:
    """Published top-1 per (variant, source, tag), and each variant's aliases."""
    from zoo.commands.validate import published_top1
    from zoo.registry.loader import load_registry

    reg = load_registry()
    top1: Dict[Tuple[str, str, str], Tuple[float, str]] = {}
    for v in reg.variants.values():
        for w in v.weights:
            value, where = published_top1(w)
            if value is not None:
                top1[(v.name, w.source, w.tag)] = (value, where["doc"])
    aliases: Dict[str, List[str]] = {}
    for alias, name in reg.aliases.items():
        aliases.setdefault(name, []).append(alias)
    return top1, aliases


def _display(row: Dict[str, Any]) -> Dict[str, Any]:
    """The terminal and markdown view: numbers at the precision a reader compares them at."""
    def fmt(key: str, spec: str) -> None:
        if out.get(key) is not None:
            out[key] = format(out[key], spec)

    out = dict(row)
    for key in ("params", "params_published"):
        fmt(key, ",")
    for key in ("source_cosine", "target_cosine"):
        fmt(key, ".7f")
    for key in ("source_max_abs", "target_max_abs"):
        fmt(key, ".2e")
    for key in ("top1", "top5"):
        fmt(key, ".3f")
    if out.get("gmacs_published") is not None and out.get("gmacs_published_convention"):
        out["gmacs_published"] = f"{out['gmacs_published']:g} {out['gmacs_published_convention']}"
    if out.get("target_cosine") is None and out.get("target_parity"):
        out["target_cosine"] = "skipped"
    out["calibration"] = calibration_line(row)
    return out


def _exact(row: Dict[str, Any]) -> Dict[str, Any]:
    """CSV: floats written in full (the renderer's short form would turn 0.9999998 into 1); the calibration
    record as its one line (JSON carries the record itself)."""
    out = {k: repr(v) if isinstance(v, float) else v for k, v in row.items() if k != "timings_s"}
    out["calibration"] = calibration_line(row)
    return out


def run_results(cfg: DictConfig) -> None:
    fmt = check_format(str(cfg.format))
    root = existing_out_dir(cfg)
    source = cfg.source.name if cfg.get("source") is not None else None
    top1, aliases = registry_facts()
    got = gather(root, top1, cfg.get("filter"), source, aliases)
    title = f"{len(got.rows)} artifact(s) under {root}"
    if fmt == "json":
        doc = {"out_dir": str(root), "filter": cfg.get("filter"), "source": source, "skipped": got.skipped}
        sys.stdout.write(render(got.rows, fmt, TABLE_COLUMNS, title=title, document=doc))
    elif fmt == "csv":
        sys.stdout.write(render([_exact(r) for r in got.rows], fmt, TABLE_COLUMNS))
    elif got.rows:
        shown = [_display(r) for r in got.rows]
        columns = TABLE_COLUMNS
        # With no int8 row the terminal's fixed width is better spent on the other columns; with one, its
        # calibration line is a warning to read whole (wrapped), not to cut at the column's edge.
        if fmt == "table" and not any(r["calibration"] for r in shown):
            columns = [c for c in TABLE_COLUMNS if c != "calibration"]
        sys.stdout.write(render(shown, fmt, columns, title=title, wrap=("calibration",)))
    footer = [f"{len(got.rows)} artifact(s) under {root}"]
    if cfg.get("filter") or source:
        footer.append(f"filter={cfg.get('filter')} source={source}")
    if got.skipped:
        footer.append(skipped_line(got.skipped) + " (format=json lists them; `python -m zoo gc` cleans them up)")
    print("; ".join(footer), file=sys.stderr)
