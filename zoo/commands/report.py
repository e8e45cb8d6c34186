"""`zoo report`: one self-contained HTML page over every artifact under out_dir.

    python -m zoo report [out_dir=artifacts] [report_file=PATH] [filter='resnext101*'] [source=timm]

The rows are those of `zoo results`; the registry adds every checkpoint's published numbers (the
accuracy plot shows all of them, built or not) and each target's precisions (the grid's columns).
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig

from zoo.errors import UserError
from zoo.gc import current_config
from zoo.results import existing_out_dir, shown_out_dir, gather, registry_facts, skipped_line

DEFAULT_NAME = "report.html"


def report_path(cfg: DictConfig, root: Path) -> Path:
    """``report_file``, or ``<out_dir>/report.html`` next to what it describes."""
    given = cfg.get("report_file")
    path = Path(str(given)).expanduser() if given else root / DEFAULT_NAME
    if path.is_dir():
        raise UserError(f"report_file={given}: is a folder; name the HTML file to write")
    return path


def write_report(path: Path, text: str) -> None:
    """The page, atomically (``zoo.store.write_atomic``: a reader sees the old page or the new one, whole,
    and a FIFO, device or link at ``path`` is refused, not replaced)."""
    from zoo.store import write_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as e:
        raise UserError(f"report_file={path}: cannot write there ({e.strerror or e})") from None


def run_report(cfg: DictConfig) -> None:
    from zoo.registry.loader import load_registry
    from zoo.registry.query import list_rows, match_variants
    from zoo.report.html import Report, page

    root = existing_out_dir(cfg)
    out = report_path(cfg, root)
    pattern = cfg.get("filter")
    source = cfg.source.name if cfg.get("source") is not None else None
    top1, aliases = registry_facts()
    got = gather(root, top1, pattern, source, aliases)
    reg = load_registry()
    variants = [v.name for v in match_variants(reg, pattern)
                if source is None or any(w.source == source for w in v.weights)]
    rep = Report(out_dir=shown_out_dir(cfg, root.resolve()), generated=datetime.now(timezone.utc).astimezone(), rows=got.rows,
                 skipped=got.skipped, checkpoints=list_rows(reg, pattern, source), variants=variants,
                 precisions=current_config().precisions, selection={"filter": pattern, "source": source})
    write_report(out, page(rep))
    note = f"{len(got.rows)} artifact(s) under {shown_out_dir(cfg, root)}"
    if got.skipped:
        note += "; " + skipped_line(got.skipped)
    print(note, file=sys.stderr)
    print(out)
