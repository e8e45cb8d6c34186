"""Questions asked of the registry: resolve a name, list checkpoints, gather published numbers."""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Dict, List, Optional

from zoo.errors import Unavailable, UserError
from zoo.registry.arch_stats import MAC_CONVENTION, arch_stats, params_as_counted
from zoo.registry.loader import Checkpoint, Registry, size_of
from zoo.registry.schema import InputSpec, ParamsCounted, Published, Variant, Weights


def _exact_name(reg: Registry, name: str) -> str:
    """``name`` itself if the registry knows it, else the one known name equal to it ignoring case
    (vendor tables print ``ResNeXt50_32x4d`` and ``ResNext101_32x8d``)."""
    if name in reg.variants or name in reg.aliases or name in reg.checkpoints:
        return name
    folded = [n for n in (*reg.variants, *reg.aliases, *reg.checkpoints) if n.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else name


def resolve_checkpoint(reg: Registry, name: str) -> Optional[Checkpoint]:
    """The (variant, source, tag) an older checkpoint name stands for (timm's ``tv_resnext50_32x4d``), or None."""
    return reg.checkpoints.get(_exact_name(reg, name))


def resolve_variant(reg: Registry, name: str) -> Variant:
    """A variant by name, alias or checkpoint alias; an unknown name gets did-you-mean suggestions."""
    name = _exact_name(reg, name)
    if name in reg.variants:
        return reg.variants[name]
    if name in reg.aliases:
        return reg.variants[reg.aliases[name]]
    if name in reg.checkpoints:
        return reg.variants[reg.checkpoints[name].variant]
    known = list(reg.variants) + list(reg.aliases) + list(reg.checkpoints)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"unknown model '{name}': {hint}run `python -m zoo list` to see every variant")


def select_weights(reg: Registry, v: Variant, source: str, tag: Optional[str] = None) -> Weights:
    """The (source, tag) checkpoint of a variant; the source's default tag when none is given."""
    if source not in reg.sources:
        raise UserError(f"unknown source '{source}': known sources are {', '.join(sorted(reg.sources))}")
    mine = [w for w in v.weights if w.source == source]
    if not mine:
        have = sorted({w.source for w in v.weights})
        raise Unavailable(f"{v.name} is not published by {source}; it has source={','.join(have)}")
    if tag is None:
        default = next((w for w in mine if w.default), None)
        if default is None:  # the registry checks this; an override of model.weights can still undo it
            raise UserError(f"{v.name} has no default weights entry for source {source}: give tag= "
                            f"({', '.join(w.tag for w in mine)})")
        return default
    for w in mine:
        if w.tag == tag:
            return w
    raise Unavailable(f"{v.name} from {source} has no tag '{tag}'; tags: {', '.join(w.tag for w in mine)}")


def effective_input(v: Variant, w: Weights) -> InputSpec:
    return w.input if w.input is not None else v.input


def match_variants(reg: Registry, pattern: Optional[str]) -> List[Variant]:
    """Variants whose name or an alias matches a shell-style wildcard (``resnext101*``)."""
    if not pattern:
        return list(reg.variants.values())
    return [
        v for v in reg.variants.values()
        if any(fnmatch.fnmatchcase(n, pattern) for n in [v.name, *v.aliases])
    ]


def _first(rows: List[Published], field: str) -> Any:
    for p in rows:
        val = getattr(p, field)
        if val is not None:
            return val
    return None


def _params_m(rows: List[Published]) -> Optional[float]:
    exact = _first(rows, "params")
    return _first(rows, "params_m") or (round(exact / 1e6, 3) if exact else None)


def list_rows(reg: Registry, pattern: Optional[str] = None, source: Optional[str] = None) -> List[Dict[str, Any]]:
    """One row per (variant, source, weight tag)."""
    if source is not None and source not in reg.sources:
        raise UserError(f"unknown source '{source}': known sources are {', '.join(sorted(reg.sources))}")
    rows = []
    named = {v.name for v in match_variants(reg, pattern)}
    for v in reg.variants.values():
        size = v.size or size_of(v.arch)
        for w in v.weights:
            if source is not None and w.source != source:
                continue
            # a checkpoint alias matches its own row only (filter='gluon_*')
            if v.name not in named and not any(fnmatch.fnmatchcase(a, pattern or "") for a in w.aliases):
                continue
            complexity = _first(w.published, "macs_g")
            convention = "MACs" if complexity is not None else None
            if complexity is None:
                complexity = _first(w.published, "flops_g")
                convention = "FLOPs" if complexity is not None else None
            rows.append({
                "variant": v.name,
                "source": w.source,
                "tag": w.tag,
                "default": w.default,
                "model_name": w.model_name,
                "top1": _first(w.published, "top1"),
                "top5": _first(w.published, "top5"),
                "params_m": _params_m(w.published),
                "complexity_g": complexity,
                "complexity": convention,
                "output": w.output.value,
                "license": w.license,
                "weights": w.hf_hub_id or w.url,
                "aliases": " ".join(w.aliases),  # older names of this checkpoint (timm's deprecated ones)
                "disputed": any(p.disputed for p in w.published),
                "arch_params": size.params,  # computed from the architecture, unlike params_m
                # MACs counted from the architecture at this checkpoint's input size: one convention for
                # every source (published figures mix MACs and FLOPs, 1 MAC = 2 FLOPs or not)
                "arch_macs_g": round(arch_stats(v.arch, effective_input(v, w).size).macs / 1e9, 3),
                "fp32_mib": round(size.fp32_bytes / 2**20, 1),  # float32 weights: what memory planning starts from
            })
    return rows


LIST_TABLE_COLUMNS = ["variant", "source", "tag", "default", "top1", "top5", "params_m", "complexity_g", "complexity",
                      "fp32_mib", "output", "license"]


def _provenance(reg: Registry, p) -> Dict[str, Any]:
    doc = reg.documents[p.provenance.doc]
    return {"document": doc.title, "doc_id": p.provenance.doc, "table": p.provenance.table, "row": p.provenance.row}


_PUBLISHED_FIELDS = [
    ("top1", "top-1 accuracy", "%"),
    ("top5", "top-5 accuracy", "%"),
    ("params", "params", "count"),
    ("params_m", "params", "M"),
    ("macs_g", "complexity", "GMACs"),
    ("flops_g", "complexity", "GFLOPs (as published)"),
    ("file_size_mb", "file size", "MB"),
]
_DEPLOYMENT_FIELDS = [
    ("top1", "top-1 accuracy", "%"),
    ("top5", "top-5 accuracy", "%"),
    ("fps", "throughput", "FPS"),
    ("latency_ms", "latency", "ms"),
    ("params_m", "params", "M"),
]


def lookup_rows(reg: Registry, v: Variant, source: Optional[str] = None, tag: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every published number for a variant (or one of its checkpoints), one row each, with its provenance."""
    if source is not None:
        select_weights(reg, v, source, tag)  # validates the source (and tag) for this variant
    elif tag is not None and not any(w.tag == tag for w in v.weights):
        raise Unavailable(f"{v.name} has no tag '{tag}'; tags: {', '.join(dict.fromkeys(w.tag for w in v.weights))}")
    rows: List[Dict[str, Any]] = []
    for w in v.weights:
        if source is not None and w.source != source:
            continue
        if tag is not None and w.tag != tag:
            continue
        for p in w.published:
            for field, metric, unit in _PUBLISHED_FIELDS:
                val = getattr(p, field)
                if val is None:
                    continue
                disputes = [d for d in p.disputed if d.split(":")[0].strip() == field]
                context = p.note or ""
                if field in ("params", "params_m") and p.params_counted is ParamsCounted.trainable_and_bn_stats:
                    counted = f"counts trainable parameters + BN moving statistics ({params_as_counted(v.arch, p.params_counted):,})"
                    context = f"{context}; {counted}" if context else counted
                rows.append({
                    "kind": "published", "source": w.source, "tag": w.tag, "metric": metric,
                    "value": val, "unit": unit, "input_size": p.input_size, "context": context,
                    "disputed": "; ".join(disputes), **_provenance(reg, p),
                })
    for d in v.deployments:
        if source is not None and d.weights_source not in (None, source):
            continue
        if tag is not None and d.weights_tag != tag:
            continue
        context = ", ".join(x for x in [
            d.device or "device not stated", d.sdk or "", f"{d.precision}",
            f"batch {d.batch}" if d.batch else "", d.fps_note or "", *d.notes,
        ] if x)
        for field, metric, unit in _DEPLOYMENT_FIELDS:
            val = getattr(d, field)
            if val is None:
                continue
            rows.append({
                "kind": f"{d.target} {d.precision}" + (f" bs{d.batch}" if d.batch else ""), "source": d.weights_source or "", "tag": d.weights_tag or "",
                "metric": metric, "value": val, "unit": unit, "input_size": None, "context": context, "disputed": "",
                **_provenance(reg, d),
            })
    return rows


LOOKUP_TABLE_COLUMNS = ["kind", "source", "tag", "metric", "value", "unit", "doc_id", "table"]


def architecture_summary(v: Variant) -> Dict[str, Any]:
    stats = arch_stats(v.arch, v.input.size)
    a = v.arch
    return {
        "variant": v.name,
        "aliases": list(v.aliases),
        "description": v.description,
        "layers": list(a.layers),
        "cardinality": a.cardinality,
        "base_width": a.base_width,
        "stem": a.stem.value,
        "shortcut": a.shortcut.value,
        "num_classes": a.num_classes,
        "params_computed": stats.params,
        "fp32_bytes": (v.size or size_of(v.arch)).fp32_bytes,  # the float32 weights (Variant.size)
        "gmacs_computed": round(stats.macs / 1e9, 3),
        "mac_convention": MAC_CONVENTION,
        "notes": list(v.notes),
    }
