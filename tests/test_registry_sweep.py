"""Acceptance: every convertible (variant, source) in the registry converts to ONNX and validates.

Fresh weights (weights=random) in each source's own library; 32x48d (>2 GiB) is tests/test_wsl_giants.py, and
MindCV has no converter yet. Slow (about a quarter of an hour on 2 cores), and part of CI.
"""
from __future__ import annotations

import pytest

from conftest import manifest_of, run_zoo
from zoo.converters.sources import ADAPTERS
from zoo.registry.loader import load_registry

SKIP_VARIANTS = {"resnext101_32x48d"}


def _pairs():
    reg = load_registry()
    for v in reg.variants.values():
        if v.name in SKIP_VARIANTS:
            continue
        for w in v.weights:
            if w.default and w.source in ADAPTERS:
                yield pytest.param(v.name, w.source, w.tag, id=f"{v.name}-{w.source}")


@pytest.mark.slow
@pytest.mark.parametrize("variant, source, tag", list(_pairs()))
def test_every_registry_pair_converts_and_validates(tmp_path, variant, source, tag):
    proc = run_zoo("convert", f"model={variant}", f"source={source}", "weights=random", f"out_dir={tmp_path}",
                   "progress=false", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    m = manifest_of(tmp_path, variant, source, tag)
    v = m["validation"]
    assert m["status"] == "passed"
    assert v["params"]["graph"] == v["params"]["architecture"]
    assert v["macs"]["graph"] == v["macs"]["architecture"]
    assert all(p["passed"] for p in v["parity"]["sets"].values())
