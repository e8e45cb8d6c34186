"""The vendors' published speed of a variant (the registry's deployments), to show beside what was
measured here: other hardware, so never as a ratio."""
from __future__ import annotations

from typing import Any, Dict, List

HARDWARE_NOTE = ("the vendor's own figures, on its own hardware: not measured by zoo bench, and not comparable "
                 "with what it measures")


def vendor_figures(variant: str) -> List[Dict[str, Any]]:
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant

    v = resolve_variant(load_registry(), variant)
    return [{"target": d.target, "device": d.device, "sdk": d.sdk, "precision": d.precision, "batch": d.batch,
             "fps": d.fps, "latency_ms": d.latency_ms, "fps_note": d.fps_note,
             "published_in": f"{d.provenance.doc}: {d.provenance.table}"}
            for d in v.deployments if d.fps is not None or d.latency_ms is not None]
