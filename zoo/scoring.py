"""Judge a measured top-1 against the published figure.

The tolerance is the user's, or a default per precision: fp32/fp16 should reproduce the published
number to a few tenths of a point (JPEG decoder and resize differences), int8 may lose up to a point.
On a subset of the validation set the measured figure also carries sampling error, so the
tolerance widens by the 95% half-width of a binomial proportion at the published accuracy,
1.96 * sqrt(p (1 - p) / n) * 100 points, and the verdict says so.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from zoo.errors import UserError

DEFAULT_TOLERANCE_PP = {"fp32": 0.3, "fp16": 0.3, "int8": 1.0}
Z_95 = 1.96


def sampling_error_pp(published_top1: float, n: int) -> float:
    """95% half-width, in percentage points, of an accuracy of ``published_top1`` % measured on ``n`` images."""
    p = published_top1 / 100.0
    return Z_95 * math.sqrt(p * (1.0 - p) / n) * 100.0


def base_tolerance(precision: str, tolerance_pp: Optional[float]) -> float:
    if tolerance_pp is not None:
        if tolerance_pp < 0:
            raise UserError(f"tolerance must be a non-negative number of percentage points, got {tolerance_pp}")
        return float(tolerance_pp)
    if precision not in DEFAULT_TOLERANCE_PP:
        known = ", ".join(sorted(DEFAULT_TOLERANCE_PP))
        raise UserError(f"no default tolerance for precision '{precision}' (known: {known}); give one explicitly")
    return DEFAULT_TOLERANCE_PP[precision]


def judge(
    measured_top1: Optional[float],
    published_top1: Optional[float],
    precision: str,
    n_evaluated: int,
    n_total: Optional[int],
    tolerance_pp: Optional[float] = None,
) -> Dict[str, Any]:
    """A verdict: ``passed`` (True / False / None when there is nothing to compare) and why."""
    base = base_tolerance(precision, tolerance_pp)
    subset = n_total is not None and 0 < n_evaluated < n_total
    verdict: Dict[str, Any] = {
        "passed": None,
        "measured_top1": measured_top1,
        "published_top1": published_top1,
        "difference_pp": None,
        "precision": precision,
        "base_tolerance_pp": base,
        "tolerance_from": "user" if tolerance_pp is not None else f"default for {precision}",
        "subset": subset,
        "n_evaluated": n_evaluated,
        "n_total": n_total,
        "sampling_widening_pp": 0.0,
        "tolerance_pp": base,
    }
    if published_top1 is None:
        return {**verdict, "reason": "no published top-1 for this checkpoint to compare with"}
    if measured_top1 is None or n_evaluated == 0:
        return {**verdict, "reason": "no image was evaluated"}
    if subset:
        verdict["sampling_widening_pp"] = sampling_error_pp(published_top1, n_evaluated)
        verdict["tolerance_pp"] = base + verdict["sampling_widening_pp"]
    delta = measured_top1 - published_top1
    verdict["difference_pp"] = delta
    # The epsilon keeps a difference exactly at the tolerance (77.918 vs 77.618 at 0.3) a pass despite float error.
    verdict["passed"] = abs(delta) <= verdict["tolerance_pp"] + 1e-9
    return {**verdict, "reason": _reason(verdict)}


def _reason(v: Dict[str, Any]) -> str:
    side = "above" if v["difference_pp"] >= 0 else "below"
    how = "within" if v["passed"] else "outside"
    allowed = f"{v['base_tolerance_pp']:.2f} pp ({v['tolerance_from']})"
    if v["subset"]:
        allowed = (
            f"{v['tolerance_pp']:.2f} pp = {allowed} + {v['sampling_widening_pp']:.2f} pp sampling error "
            f"of {v['n_evaluated']} of {v['n_total']} images"
        )
    return (
        f"measured {v['measured_top1']:.3f}% is {abs(v['difference_pp']):.3f} pp {side} published "
        f"{v['published_top1']:.3f}%: {how} the tolerance of {allowed}"
    )
