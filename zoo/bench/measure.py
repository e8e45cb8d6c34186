"""One measurement point: a callable timed in windows until three consecutive windows agree.

Each window runs the call back to back for ``window_s`` seconds (at least once) and yields a
throughput. The point is stable when the last ``windows_needed`` throughputs lie within
``stability_pct`` percent of their mean (max - min against the mean); it stops there, or when
``max_seconds`` have passed, marked unstable. Latency percentiles are over the calls of the windows
the throughput is taken from. The clock is a parameter so the stopping rule is testable without timing.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List

import numpy as np

Clock = Callable[[], float]


@dataclass
class Point:
    batch: int
    throughput: float  # images per second, the mean of the deciding windows
    latency_ms: Dict[str, float]  # p50 / p90 / p99 of one call (one batch)
    stable: bool
    windows: List[float] = field(default_factory=list)  # every window's images per second, in order
    calls: int = 0  # timed calls, all windows
    seconds: float = 0.0  # timed seconds, all windows

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def spread_pct(values: List[float]) -> float:
    """(max - min) / mean, in percent."""
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean * 100 if mean > 0 else float("inf")


def measure(call: Callable[[], Any], batch: int, *, window_s: float, stability_pct: float, max_seconds: float,
            warmup: int = 2, windows_needed: int = 3, clock: Clock = time.perf_counter) -> Point:
    """Time ``call`` (one batch of ``batch`` images per call) until ``windows_needed`` windows agree."""
    for _ in range(warmup):  # first calls allocate and pick kernels
        call()
    start = clock()
    windows: List[float] = []
    per_window: List[List[float]] = []
    while True:
        durations: List[float] = []
        w_start = clock()
        while True:
            t = clock()
            call()
            durations.append(clock() - t)
            if clock() - w_start >= window_s:
                break
        elapsed = clock() - w_start
        windows.append(batch * len(durations) / elapsed if elapsed > 0 else float("inf"))
        per_window.append(durations)
        stable = len(windows) >= windows_needed and spread_pct(windows[-windows_needed:]) <= stability_pct
        if stable or clock() - start >= max_seconds:
            break
    used = per_window[-windows_needed:]
    lat = np.array([d for w in used for d in w]) * 1000.0
    p50, p90, p99 = np.percentile(lat, [50, 90, 99])
    tail = windows[-windows_needed:]
    return Point(batch=batch, throughput=sum(tail) / len(tail),
                 latency_ms={"p50": float(p50), "p90": float(p90), "p99": float(p99)}, stable=stable,
                 windows=windows, calls=sum(len(w) for w in per_window),
                 seconds=sum(sum(w) for w in per_window))
