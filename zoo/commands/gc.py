"""`zoo gc`: list (and with apply=true remove) artifact folders no current configuration references.

    python -m zoo gc [out_dir=artifacts]             # a dry run: what would go, why, and the bytes freed
    python -m zoo gc apply=true [stale_hours=2]      # remove them

The default is a dry run. The global ``dry_run`` key defaults to false (``publish`` reads it), so it
cannot mean "remove" here: only ``apply=true`` removes, and ``dry_run=true`` wins over it.
"""
from __future__ import annotations

import sys
import time

from pathlib import Path

from omegaconf import DictConfig

from zoo.errors import UserError
from zoo.gc import current_config, human_bytes, plan, remove
from zoo.remote.location import is_url
from zoo.results import existing_out_dir
from zoo.render import check_format, render

COLUMNS = ["action", "size", "reason", "path"]


def _min_age_s(cfg: DictConfig) -> float:
    return float(cfg.stale_hours) * 3600  # typed and bounded by zoo.config.schema


def run_gc(cfg: DictConfig) -> None:
    fmt = check_format(str(cfg.format))
    apply = bool(cfg.apply) and not bool(cfg.dry_run)
    min_age_s = _min_age_s(cfg)
    root = existing_out_dir(cfg)
    store = str(cfg.out_dir).rstrip("/") if is_url(cfg.out_dir) else None  # root is then its local shadow
    found = plan(root, current_config(), time.time(), min_age_s)

    def shown(path: Path) -> str:
        return f"{store}/{path.relative_to(root).as_posix()}" if store else str(path)

    rows, failures = [], []
    for g in found.remove:
        action = "would remove"
        if apply:
            try:
                if store:
                    from zoo.remote.artifacts import remove_folder

                    remove_folder(store, cfg.store.endpoint_url, g.path.relative_to(root).as_posix())
                else:
                    remove(g.path)
                action = "removed"
            except OSError as e:
                action = "failed"
                failures.append(f"{shown(g.path)}: {e.strerror or e}")
            except UserError as e:
                action = "failed"
                failures.append(f"{shown(g.path)}: {e}")
        rows.append({"action": action, "size": human_bytes(g.bytes), "bytes": g.bytes, "reason": g.reason,
                     "path": shown(g.path)})
    freed = sum(r["bytes"] for r in rows if r["action"] == "removed")
    listed = sum(r["bytes"] for r in rows)
    kept_rows = [{"path": shown(k.path), "reason": k.reason, "bytes": k.bytes} for k in found.kept]
    if store:
        root = store  # type: ignore[assignment] - what the user named, in every line below
    if fmt == "json":
        kept = kept_rows
        doc = {"out_dir": str(root), "applied": apply, "freed_bytes": freed, "kept": kept}
        sys.stdout.write(render(rows, fmt, COLUMNS, document=doc))
    elif rows or fmt == "csv":
        sys.stdout.write(render(rows, fmt, COLUMNS, title=f"garbage under {root}"))
    for k in kept_rows:
        print(f"kept {k['path']}: {k['reason']}", file=sys.stderr)
    if apply:
        removed = len(rows) - len(failures)
        print(f"removed {removed} folder(s), freed {human_bytes(freed)} under {root}", file=sys.stderr)
    elif rows:
        print(f"dry run: {len(rows)} folder(s), {human_bytes(listed)} would be freed; "
              f"`python -m zoo gc apply=true out_dir={cfg.out_dir}` removes them", file=sys.stderr)
    else:
        print(f"nothing to remove under {root}", file=sys.stderr)
    if failures:
        for line in failures:
            print(f"error: could not remove {line}", file=sys.stderr)
        sys.exit(1)
