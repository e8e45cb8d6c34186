"""`zoo list` and `zoo lookup`: read-only questions to the registry."""
from __future__ import annotations

import sys

from omegaconf import DictConfig

from zoo.errors import UserError
from zoo.registry.loader import load_registry
from zoo.registry.query import (
    LIST_TABLE_COLUMNS,
    LOOKUP_TABLE_COLUMNS,
    architecture_summary,
    list_rows,
    lookup_rows,
    resolve_variant,
)
from zoo.render import check_format, render


def _source_name(cfg: DictConfig):
    src = cfg.get("source")
    return None if src is None else src.name


def run_list(cfg: DictConfig) -> None:
    fmt = check_format(cfg.format)
    reg = load_registry()
    rows = list_rows(reg, cfg.get("filter"), _source_name(cfg))
    if not rows:
        raise UserError(f"nothing matches filter={cfg.get('filter')} source={_source_name(cfg)}; try `python -m zoo list`")
    sys.stdout.write(render(rows, fmt, LIST_TABLE_COLUMNS, title=f"{len(rows)} checkpoints"))


def run_lookup(cfg: DictConfig) -> None:
    fmt = check_format(cfg.format)
    if cfg.get("model") is None:
        raise UserError("lookup needs a variant: python -m zoo lookup model=resnext101_32x8d")
    reg = load_registry()
    v = resolve_variant(reg, cfg.model.name)
    rows = lookup_rows(reg, v, _source_name(cfg), cfg.get("tag"))
    arch = architecture_summary(v)
    if fmt == "table":
        a = arch
        sys.stdout.write(
            f"{v.name}  ({v.description})\n"
            f"  architecture: layers {a['layers']}, cardinality {a['cardinality']}, base width {a['base_width']}, "
            f"{a['stem']} stem, {a['shortcut']} shortcut, {a['num_classes']} classes\n"
            f"  computed from the spec: {a['params_computed']:,} params ({a['fp32_bytes'] / 2**20:,.1f} MiB as float32), "
            f"{a['gmacs_computed']} GMACs at "
            f"{v.input.size}x{v.input.size} ({a['mac_convention']})\n"
        )
        for note in v.notes:
            sys.stdout.write(f"  note: {note}\n")
    doc = {"architecture": arch, "documents": {k: d.title for k, d in reg.documents.items()}}
    sys.stdout.write(render(rows, fmt, LOOKUP_TABLE_COLUMNS, title=f"published numbers for {v.name}", document=doc))
    if fmt == "table":
        _footnotes(reg, rows)


def _footnotes(reg, rows) -> None:
    """What the compact table leaves out: disputes, deployment context, document titles."""
    seen = set()
    for r in rows:
        for key, text in (("disputed", r["disputed"]), ("context", r["context"])):
            line = f"  {key} [{r['kind']} {r['source']} {r['tag']}]: {text}"
            if text and line not in seen:
                seen.add(line)
                sys.stdout.write(line + "\n")
    for doc_id in dict.fromkeys(r["doc_id"] for r in rows):
        d = reg.documents[doc_id]
        sys.stdout.write(f"  {doc_id}: {d.title}" + (f" <{d.url}>" if d.url else "") + "\n")
