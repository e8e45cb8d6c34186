"""The memory admission gate with real concurrent processes, and wired into `zoo convert`."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import run_zoo
from zoo import memory_gate
from zoo.errors import UserError
from zoo.memory_gate import estimate_peak_bytes, reservations, reserved

BUDGET = 1000  # a fake budget in bytes: the gate only adds and compares numbers
POLL = 0.05


def _job(ledger: str, need: int, name: str, folder: str, hold_s: float, wait_for: str = "") -> None:
    """Reserve, write when the reservation began and ended; optionally hold until ``wait_for`` began."""
    d = Path(folder)
    with open(d / f"{name}.log", "w") as log:
        with reserved(need, BUDGET, Path(ledger), name, poll_s=POLL, stream=log):
            (d / f"{name}.start").write_text(repr(time.time()))
            deadline = time.time() + 30
            if wait_for:
                while not (d / f"{wait_for}.start").exists() and time.time() < deadline:
                    time.sleep(POLL)
            time.sleep(hold_s)
            (d / f"{name}.end").write_text(repr(time.time()))


def _times(folder: Path, name: str) -> tuple[float, float]:
    return float((folder / f"{name}.start").read_text()), float((folder / f"{name}.end").read_text())


def _start(ledger: Path, need: int, name: str, folder: Path, hold_s: float = 0.5, wait_for: str = "") -> mp.Process:
    p = mp.get_context("spawn").Process(target=_job, args=(str(ledger), need, name, str(folder), hold_s, wait_for))
    p.start()
    return p


def _join(*procs: mp.Process) -> None:
    for p in procs:
        p.join(60)
        assert p.exitcode == 0


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(POLL)


def test_two_jobs_of_60_percent_run_one_after_the_other(tmp_path):
    ledger = tmp_path / "ledger.json"
    a = _start(ledger, 600, "a", tmp_path, hold_s=1.0)
    _wait_for(tmp_path / "a.start")
    b = _start(ledger, 600, "b", tmp_path, hold_s=0.2)
    _join(a, b)
    a_start, a_end = _times(tmp_path, "a")
    b_start, b_end = _times(tmp_path, "b")
    assert a_end <= b_start  # b began only after a had given its reservation back
    said = (tmp_path / "b.log").read_text()
    assert said.count("\n") == 1 and "waiting for memory: b:" in said and "a (pid" in said
    assert reservations(ledger) == []  # both gave their reservations back


def test_two_jobs_of_30_percent_overlap(tmp_path):
    ledger = tmp_path / "ledger.json"
    # Each holds its reservation until it sees the other's start: both finish only if both were admitted at once.
    a = _start(ledger, 300, "a", tmp_path, hold_s=0.1, wait_for="b")
    b = _start(ledger, 300, "b", tmp_path, hold_s=0.1, wait_for="a")
    _join(a, b)
    a_start, a_end = _times(tmp_path, "a")
    b_start, b_end = _times(tmp_path, "b")
    assert max(a_start, b_start) < min(a_end, b_end)
    assert (tmp_path / "a.log").read_text() == (tmp_path / "b.log").read_text() == ""  # nobody waited


def test_a_dead_process_reservation_is_ignored(tmp_path):
    ledger = tmp_path / "ledger.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # A dead pid, and a live pid whose start time does not match (the pid was reused): both stale.
    stale = [{"id": "x", "pid": dead.pid, "bytes": BUDGET, "label": "gone"},
             {"id": "y", "pid": os.getpid(), "started": "-1", "bytes": BUDGET, "label": "reused pid"}]
    ledger.write_text(json.dumps({"reservations": stale}))
    said = []
    with reserved(BUDGET // 2, BUDGET, ledger, "me", poll_s=POLL, stream=_Lines(said)):
        live = reservations(ledger)
        assert [e["label"] for e in live] == ["me"] and live[0]["pid"] == os.getpid()
    assert said == [] and json.loads(ledger.read_text())["reservations"] == []


def test_a_job_over_the_whole_budget_runs_alone(tmp_path):
    ledger = tmp_path / "ledger.json"
    small = _start(ledger, 300, "small", tmp_path, hold_s=1.0)
    _wait_for(tmp_path / "small.start")
    big = _start(ledger, 1500, "big", tmp_path, hold_s=1.0)
    _wait_for(tmp_path / "big.start")
    after = _start(ledger, 300, "after", tmp_path, hold_s=0.1)
    _join(small, big, after)
    s_start, s_end = _times(tmp_path, "small")
    b_start, b_end = _times(tmp_path, "big")
    a_start, a_end = _times(tmp_path, "after")
    assert s_end <= b_start and b_end <= a_start  # nobody ran beside the big one
    assert "more than the whole budget" in (tmp_path / "big.log").read_text()
    # With the ledger empty it starts at once: over the budget does not mean never.
    said = []
    with reserved(1500, BUDGET, ledger, "alone", poll_s=POLL, stream=_Lines(said)):
        pass
    assert said == []


class _Lines:
    def __init__(self, sink: list) -> None:
        self.sink = sink

    def write(self, text: str) -> None:
        if text.strip():
            self.sink.append(text)

    def flush(self) -> None:
        pass


def test_budget_and_estimate():
    phys = memory_gate.physical_memory_bytes()
    assert 0 < memory_gate.budget_bytes(None) < phys
    assert memory_gate.budget_bytes(1.5) == int(1.5 * 2**30)
    for bad in (0, -2, "lots"):
        with pytest.raises(UserError, match="memory_budget_gb"):
            memory_gate.budget_bytes(bad)
    mid, giant = 1_874_121_888, 3_313_644_704  # resnext101_32x32d and 32x48d in fp32
    assert estimate_peak_bytes(mid, "onnx") > 11_500_000_000  # measured: 11.5 GB (validate)
    assert estimate_peak_bytes(giant, "onnx") > 8_100_000_000  # measured: 8.1 GB (export, streamed)
    assert estimate_peak_bytes(giant, "mindir") > estimate_peak_bytes(giant, "onnx")
    # a vendor kit's target has not been measured: the ONNX work is the same, so the in-memory factor
    assert estimate_peak_bytes(1000, "vacc") == estimate_peak_bytes(1000, "onnx")
    assert estimate_peak_bytes(giant, "vacc") > estimate_peak_bytes(giant, "openvino")
    # the rule: two 300M-parameter conversions never run at once on a 24 GiB machine
    assert 2 * estimate_peak_bytes(mid, "onnx") > 0.85 * 24 * 2**30


def test_convert_waits_for_memory_and_a_cache_hit_does_not(tmp_path):
    """A real conversion queues behind a reservation that fills the budget; its re-run (a cache hit) does not."""
    ledger = tmp_path / "ledger.json"
    args = ["convert", "model=resnext50_32x4d", "source=torchvision", "target=onnx", "weights=random",
            f"out_dir={tmp_path / 'out'}", "progress=false", "memory_budget_gb=1", f"memory_ledger={ledger}"]
    with reserved(2**30, 2**30, ledger, "a test holding the whole budget"):
        proc = subprocess.Popen([sys.executable, "-m", "zoo", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        first = _read_line(proc)
        assert first.startswith("waiting for memory: resnext50_32x4d torchvision/IMAGENET1K_V1 -> onnx fp32"), first
        assert "a test holding the whole budget" in first
        time.sleep(1.0)
        assert proc.poll() is None  # still waiting while the budget is held
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "[PASSED]" in out and reservations(ledger) == []
    with reserved(2**30, 2**30, ledger, "holding it again"):
        hit = run_zoo(*args, timeout=120)
    assert hit.returncode == 0, hit.stderr
    assert "(cache hit)" in hit.stdout and "waiting for memory" not in hit.stderr


def _read_line(proc: subprocess.Popen, timeout: float = 120) -> str:
    box: list = []
    reader = threading.Thread(target=lambda: box.append(proc.stderr.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box, "no line on stderr"
    return box[0]


def test_every_variant_has_a_size_derived_from_its_architecture(tmp_path):
    import shutil

    from zoo.registry.arch_stats import arch_stats
    from zoo.registry.loader import PACKAGE_CONF, load_registry

    reg = load_registry()
    for v in reg.variants.values():
        assert v.size.params == arch_stats(v.arch).params and v.size.fp32_bytes == 4 * v.size.params, v.name
    rows = json.loads(run_zoo("list", "format=json", timeout=120).stdout)
    for r in rows:
        assert r["fp32_mib"] == round(reg.variants[r["variant"]].size.fp32_bytes / 2**20, 1)
    # A size written into a variant file would drift from its arch: the loader refuses it.
    conf = tmp_path / "conf"
    shutil.copytree(PACKAGE_CONF, conf)
    model = conf / "model" / "resnext50_32x4d.yaml"
    model.write_text(model.read_text() + "size:\n  params: 1\n")
    proc = run_zoo("list", env={"ZOO_CONF": str(conf)}, timeout=120)
    assert proc.returncode == 2 and "key 'size' is computed from 'arch'" in proc.stderr, proc.stderr
