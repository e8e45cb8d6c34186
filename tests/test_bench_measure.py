"""zoo bench's measuring rule and pick, on a fake clock and hand-made measurements (no timing here)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

import pytest

from zoo.bench.machine import describe
from zoo.bench.measure import measure, spread_pct
from zoo.bench.pick import Candidate, choose, parse
from zoo.errors import UserError


class FakeRun:
    """A call that takes the next scripted number of seconds on a clock only it advances."""

    def __init__(self, durations: Iterator[float]) -> None:
        self.now, self.durations, self.calls = 0.0, durations, 0

    def clock(self) -> float:
        return self.now

    def __call__(self) -> None:
        self.now += next(self.durations)
        self.calls += 1


def windows_of(per_call: List[float], calls_each: List[int]) -> Iterator[float]:
    for d, n in zip(per_call, calls_each):
        yield from [d] * n


def test_stops_at_the_first_three_windows_that_agree():
    # warm-up (2 calls), then 1 s windows at 2, 4, 8, 8, 8 images/s (exact binary fractions of a second)
    run = FakeRun(iter([0.5, 0.5, *windows_of([0.5, 0.25, 0.125, 0.125, 0.125, 0.125], [2, 4, 8, 8, 8, 8])]))
    p = measure(run, 1, window_s=1.0, stability_pct=5, max_seconds=60, clock=run.clock)
    assert p.windows == [2.0, 4.0, 8.0, 8.0, 8.0]  # [4, 8, 8] spread 60%: one window more
    assert p.stable and p.throughput == 8.0
    assert run.calls == 2 + 2 + 4 + 8 + 8 + 8  # the sixth window's calls never ran
    assert p.latency_ms == {"p50": 125.0, "p90": 125.0, "p99": 125.0}


def test_two_agreeing_windows_are_not_enough():
    run = FakeRun(iter([0.25] * 100))
    p = measure(run, 4, window_s=1.0, stability_pct=5, max_seconds=60, clock=run.clock, warmup=0)
    assert p.windows == [16.0, 16.0, 16.0] and p.stable and p.calls == 12


def test_an_unstable_point_stops_at_its_time_bound():
    run = FakeRun(windows_of([0.5, 0.125] * 50, [2, 8] * 50))
    p = measure(run, 1, window_s=1.0, stability_pct=5, max_seconds=10, clock=run.clock, warmup=0)
    assert not p.stable and len(p.windows) == 10  # ten 1 s windows, then the bound
    assert p.throughput == pytest.approx((8 + 2 + 8) / 3)  # the last three windows: 8, 2, 8
    assert spread_pct(p.windows[-3:]) > 5


def test_latency_percentiles_are_numpy_linear_on_the_deciding_windows():
    # deciding windows: 10 calls of 0.1 s each, one window with a 0.3 s straggler (a different throughput)
    durations = [0.1] * 10 + [0.1] * 10 + [0.1] * 7 + [0.3]
    run = FakeRun(iter(durations))
    p = measure(run, 1, window_s=0.95, stability_pct=100, max_seconds=60, clock=run.clock, warmup=0)
    assert len(p.windows) == 3 and p.calls == 28
    # 27 calls of 100 ms and one of 300 ms: p50 100; p99 at rank 0.99 x 27 = 26.73 -> 100 + 0.73 x 200
    assert p.latency_ms["p50"] == pytest.approx(100.0)
    assert p.latency_ms["p99"] == pytest.approx(100 + 0.73 * 200)


def _cand(label, status="passed", calibration=None, points=()):
    return Candidate(label, f"/a/{label}", status, calibration, list(points))


def _pt(batch, throughput, p50, p90=None):
    return {"batch": batch, "throughput": throughput, "latency_ms": {"p50": p50, "p90": p90 or p50, "p99": p90 or p50}}


GENERATED = {"source": "generated"}
CANDIDATES = [
    _cand("fp32", points=[_pt(1, 30, 33), _pt(8, 40, 200)]),
    _cand("failed-fast", status="failed", points=[_pt(1, 300, 3), _pt(8, 400, 20)]),
    _cand("kit", status="kit"),
    _cand("int8-generated", calibration=GENERATED, points=[_pt(1, 60, 16), _pt(8, 120, 66)]),
    _cand("fp16", points=[_pt(1, 25, 40, 45), _pt(8, 35, 230)]),
]


def test_pick_counts_only_passed_artifacts():
    c = choose(CANDIDATES, "throughput")
    assert (c.candidate.label, c.point["batch"]) == ("fp32", 8)
    why = dict(c.excluded)
    assert why["failed-fast"].startswith("status failed") and why["kit"].startswith("status kit")
    assert "generated images" in why["int8-generated"]
    assert choose(CANDIDATES, "latency").candidate.label == "fp32"


def test_force_counts_generated_calibration_but_never_a_failed_artifact():
    assert choose(CANDIDATES, "throughput", force=True).candidate.label == "int8-generated"
    assert choose(CANDIDATES, "latency", force=True).point == _pt(1, 60, 16)
    assert "failed-fast" in dict(choose(CANDIDATES, "throughput", force=True).excluded)


def test_throughput_under_a_latency_budget():
    c = choose(CANDIDATES, "throughput_under:50")  # p90 within 50 ms: fp32 bs1 (33) and fp16 bs1 (45)
    assert (c.candidate.label, c.point["batch"]) == ("fp32", 1)
    assert choose(CANDIDATES, "throughput_under:250").point["batch"] == 8  # fp32 bs8, 40 img/s at 200 ms
    with pytest.raises(UserError, match="lowest is 33.00 ms"):
        choose(CANDIDATES, "throughput_under:10")


@pytest.mark.parametrize("bad", ["fastest", "throughput_under", "throughput_under:x", "throughput_under:-5",
                                 "latency:3"])
def test_pick_strategies_are_named(bad):
    with pytest.raises(UserError, match=f"pick={bad}"):
        parse(bad)


def test_the_machine_is_named_as_the_kernel_names_it():
    m = describe()
    info = Path("/proc/cpuinfo").read_text()
    name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
    flags = next(line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags"))
    assert m["cpu"] == name and m["logical_cores"] == info.count("processor\t:")
    assert ("avx2" in m["isa"]) == ("avx2" in flags) and ("amx_int8" in m["isa"]) == ("amx_int8" in flags)
    assert describe()["id"] == m["id"] and len(m["id"]) == 12
