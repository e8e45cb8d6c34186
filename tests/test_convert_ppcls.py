"""PaddleClas to canonical ONNX through paddle.jit.save + paddle2onnx, from .pdparams the test writes."""
from __future__ import annotations

import pickle
from pathlib import Path

import onnx
import pytest

from conftest import make_checkpoint, manifest_of, run_zoo


@pytest.mark.parametrize("variant", ["resnext50_32x4d", "resnext50_vd_32x4d"])
def test_pdparams_checkpoint_converts_with_softmax_output(tmp_path, variant):
    ckpt = make_checkpoint(variant, "ppcls", tmp_path / "model.pdparams", seed=5)
    with open(ckpt, "rb") as f:  # PaddleClas's own format: a pickled dict with Paddle's name table
        raw = pickle.load(f)
    assert "StructuredToParameterName@@" in raw
    out = tmp_path / "out"
    proc = run_zoo("convert", f"model={variant}", "source=ppcls", f"weights={ckpt}", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    name = "resnext50_32x4d" if variant == "resnext50_32x4d" else "resnext50d_32x4d"
    m = manifest_of(out, name, "ppcls", "pretrained")
    v = m["validation"]
    assert m["status"] == "passed"
    assert v["params"]["graph"] == v["params"]["architecture"]
    published = v["params"]["published"][0]
    assert published["disputed"] and published["relative_diff"] > 0.05  # PaddleClas's own count is low
    model = onnx.load(out / name / "ppcls" / "pretrained" / "onnx" / "model.onnx")
    assert model.graph.node[-1].op_type == "Softmax"  # PaddleClas exports probabilities
    assert {p.key: p.value for p in model.metadata_props}["zoo.output"] == "probs"
    for p in v["parity"]["sets"].values():
        assert p["cosine"] >= 0.99999


def test_malicious_pdparams_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    bad = tmp_path / "evil.pdparams"
    bad.write_bytes(pickle.dumps({"conv._conv.weight": Payload()}))
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=ppcls", f"weights={bad}", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr
    assert "refusing to load" in proc.stderr and "pathlib" in proc.stderr
    assert not marker.exists()
