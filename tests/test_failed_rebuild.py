"""A rebuild that fails validation never replaces an artifact that passed: the failed build is kept
beside it, hidden, for inspection, and every reader (results, a cache hit) still finds the one that passed."""
from __future__ import annotations

import hashlib
import json

import pytest
from conftest import run_zoo

import zoo


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_failed_rebuild_keeps_the_passed_artifact(tmp_path):
    out = tmp_path / "artifacts"
    good = zoo.convert("resnext50_32x4d", weights="random", out_dir=out)
    assert good.status == "passed"
    before = _digest(good.primary)
    # base_width=2 builds a narrower network: its params differ from the published figure, a hard check
    with pytest.raises(zoo.ValidationFailed) as e:
        zoo.convert("resnext50_32x4d", weights="random", out_dir=out, force=True, overrides={"model.arch.base_width": 2})
    failed = good.folder.with_name(f".{good.folder.name}.failed")
    assert str(failed / "manifest.json") in str(e.value) and f"stays in {good.folder}" in str(e.value)
    assert json.loads((good.folder / "manifest.json").read_text())["status"] == "passed"
    assert _digest(good.primary) == before
    assert json.loads((failed / "manifest.json").read_text())["status"] == "failed"
    listed = json.loads(run_zoo("results", f"out_dir={out}", "format=json").stdout)
    assert [(r["target"], r["status"]) for r in listed["rows"]] == [("onnx", "passed")]
    assert listed["skipped"] == []  # the hidden copy is neither a row nor a leftover
    again = zoo.convert("resnext50_32x4d", weights="random", out_dir=out)
    assert again.cache_hit and again.status == "passed"
