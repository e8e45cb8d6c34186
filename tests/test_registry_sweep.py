"""Acceptance: a sweep of every convertible (variant, source) in the registry to ONNX, as users run it.

One Hydra multirun through the local parallel launcher (the zoo_joblib preset), fresh weights
(weights=random) built by each source's own library. Every pair converts and validates, every
combination the registry does not have is skipped with one line, and the identical sweep run again
is all cache hits. 32x48d (>2 GiB) is tests/test_wsl_giants.py. 32x32d (1.8 GiB, 11.5 GB of memory each,
so the memory gate runs its two conversions one at a time, about 5 minutes each here) is left to
bench/bench_sweep.py, which sweeps the whole registry. So are MindCV's four pairs: they take 1-1.5 minutes
each (MindSpore's CPU reference is the slow part), and tests/test_convert_mindcv.py and the README's MindCV
command convert MindCV's network in CI. Slow (about 6 minutes on 2 cores), and part of CI.
"""
from __future__ import annotations

import re
import shutil

import pytest

from conftest import manifest_of, run_zoo
from zoo.converters.sources import convertible
from zoo.registry.loader import load_registry

EXCLUDED = ("resnext101_32x48d", "resnext101_32x32d")
SWEPT = [s for s in convertible() if s != "mindcv"]
SOURCES = ",".join(SWEPT)
SUMMARY = re.compile(r"^(\S+)  (\S+)/(\S+) -> onnx fp32\s+\[(\w+)\](  \(cache hit\))?$", re.M)


def _expected():
    reg = load_registry()
    pairs = {(v.name, w.source, w.tag) for v in reg.variants.values() if v.name not in EXCLUDED
             for w in v.weights if w.default and w.source in SWEPT}
    missing = sum(1 for v in reg.variants.values() if v.name not in EXCLUDED
                  for s in SWEPT if not any(w.source == s for w in v.weights))
    return pairs, missing


def _sweep(out_dir):
    return run_zoo("-m", "convert", f"model=glob(*,exclude=[{','.join(EXCLUDED)}])", f"source={SOURCES}", "target=onnx",
                   "weights=random", f"out_dir={out_dir}", "progress=false", "hydra/launcher=zoo_joblib",
                   cwd=out_dir, timeout=3600)


@pytest.fixture
def out_dir(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path)  # 29 artifacts, about 6 GB: not kept for the rest of the session


@pytest.mark.slow
def test_a_sweep_of_the_whole_registry_converts_validates_and_reruns_from_the_cache(out_dir):
    tmp_path = out_dir
    pairs, missing = _expected()
    assert len(pairs) >= 25
    first = _sweep(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    built = {(m[0], m[1], m[2]): m for m in SUMMARY.findall(first.stdout)}
    assert set(built) == pairs, sorted(pairs ^ set(built))
    assert first.stderr.count("skipped: ") == missing
    failed = []
    for variant, source, tag in sorted(pairs):
        m = manifest_of(tmp_path, variant, source, tag)
        v = m["validation"]
        ok = (m["status"] == "passed" and v["params"]["graph"] == v["params"]["architecture"]
              and v["macs"]["graph"] == v["macs"]["architecture"]
              and all(p["passed"] for p in v["parity"]["sets"].values()))
        if not ok:
            failed.append(f"{variant}/{source}")
    assert not failed, failed

    again = _sweep(tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    rerun = SUMMARY.findall(again.stdout)
    assert {(m[0], m[1], m[2]) for m in rerun} == pairs
    assert all(m[3] == "PASSED" and m[4] for m in rerun), [m for m in rerun if not m[4]]
