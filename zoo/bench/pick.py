"""Which artifact to deploy on this machine, by a named strategy, among those that passed their checks.

``throughput``: the most images per second at any measured batch. ``latency``: the lowest median
latency of one call. ``throughput_under:<ms>``: the most images per second among the points whose p90
latency is within the budget. Only artifacts whose status is ``passed`` count (a kit was never run, a
failed one did not match its reference); an int8 artifact calibrated on generated images counts only
when ``force`` says so, since its accuracy on real data is unknown.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zoo.errors import UserError

STRATEGIES = ("throughput", "latency", "throughput_under:<ms>")


@dataclass
class Candidate:
    label: str
    folder: str
    status: str
    calibration: Optional[Dict[str, Any]]
    points: List[Dict[str, Any]]  # this machine's points


@dataclass
class Choice:
    candidate: Candidate
    point: Dict[str, Any]
    why: str
    excluded: List[Tuple[str, str]]  # (label, why it did not count)


def parse(value: str) -> Tuple[str, Optional[float]]:
    """``throughput`` | ``latency`` | ``throughput_under:<ms>`` -> (name, budget in ms)."""
    name, sep, budget = str(value).partition(":")
    if name in ("throughput", "latency") and not sep:
        return name, None
    if name == "throughput_under" and sep:
        try:
            ms = float(budget)
        except ValueError:
            ms = -1.0
        if ms > 0:
            return name, ms
        raise UserError(f"pick={value}: give the latency budget in milliseconds, above 0 (pick=throughput_under:50)")
    raise UserError(f"pick={value}: choose one of {', '.join(STRATEGIES)}")


def excluded_because(c: Candidate, force: bool) -> Optional[str]:
    from zoo.calibration import is_generated

    if c.status != "passed":
        return f"status {c.status}: only artifacts that passed their checks count"
    if is_generated(c.calibration) and not force:
        return "int8 calibrated on generated images (accuracy unknown); force=true counts it"
    if not c.points:
        return "not measured on this machine"
    return None


def choose(candidates: Sequence[Candidate], strategy: str, force: bool = False) -> Choice:
    name, budget = parse(strategy)
    excluded, pool = [], []
    for c in candidates:
        why = excluded_because(c, force)
        if why:
            excluded.append((c.label, why))
        else:
            pool += [(c, p) for p in c.points]
    if not pool:
        raise UserError(f"pick={strategy}: no artifact counts ("
                        + "; ".join(f"{label}: {why}" for label, why in excluded) + ")")
    if name == "throughput":
        c, p = max(pool, key=lambda cp: cp[1]["throughput"])
        why = f"the most images per second measured here: {p['throughput']:.1f} img/s at batch {p['batch']}"
    elif name == "latency":
        c, p = min(pool, key=lambda cp: cp[1]["latency_ms"]["p50"])
        why = f"the lowest median latency measured here: {p['latency_ms']['p50']:.2f} ms per call at batch {p['batch']}"
    else:
        within = [cp for cp in pool if cp[1]["latency_ms"]["p90"] <= budget]
        if not within:
            best = min(pool, key=lambda cp: cp[1]["latency_ms"]["p90"])
            raise UserError(f"pick={strategy}: no measured point has p90 latency within {budget:g} ms; the lowest is "
                            f"{best[1]['latency_ms']['p90']:.2f} ms ({best[0].label}, batch {best[1]['batch']})")
        c, p = max(within, key=lambda cp: cp[1]["throughput"])
        why = (f"the most images per second with p90 latency within {budget:g} ms: {p['throughput']:.1f} img/s at "
               f"batch {p['batch']} (p90 {p['latency_ms']['p90']:.2f} ms)")
    return Choice(c, p, why, excluded)
