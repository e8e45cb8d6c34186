"""An artifact's measured speed as the other views show it (results, report, card): this machine's
entry of the manifest's ``bench`` record, its best throughput and its lowest latency."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Dict, Mapping, Optional


@lru_cache(maxsize=1)
def this_machine_id() -> str:
    from zoo.bench.machine import describe

    return str(describe()["id"])


def entry_here(manifest: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """This machine's measurement of the artifact, or None."""
    entry = (manifest.get("bench") or {}).get(this_machine_id())
    return entry if entry and entry.get("points") else None


def best_throughput(entry: Mapping[str, Any]) -> Dict[str, Any]:
    return max(entry["points"], key=lambda p: p["throughput"])


def lowest_latency(entry: Mapping[str, Any]) -> Dict[str, Any]:
    return min(entry["points"], key=lambda p: p["latency_ms"]["p50"])


def columns(manifest: Mapping[str, Any]) -> Dict[str, Any]:
    """``img_s`` and ``bench_batch`` (the best throughput here and its batch), ``p50_ms`` (the lowest median
    latency here, per call) and ``bench_points`` (every batch: its throughput and median latency); None
    and an empty list when the artifact was not measured on this machine."""
    entry = entry_here(manifest)
    if entry is None:
        return {"img_s": None, "bench_batch": None, "p50_ms": None, "bench_points": []}
    best, fast = best_throughput(entry), lowest_latency(entry)
    points = [{"batch": p["batch"], "img_s": p["throughput"], "p50_ms": p["latency_ms"]["p50"]} for p in entry["points"]]
    return {"img_s": best["throughput"], "bench_batch": best["batch"], "p50_ms": fast["latency_ms"]["p50"],
            "bench_points": points}
