"""Golden outputs: written with the artifact, checked later against a runner under per-precision gates.

The runner here is real: ONNX Runtime on the canonical ONNX of resnext50_32x4d (fresh torchvision
weights), and the references are the torch model's own outputs (``adapter.run``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import export_canonical

from zoo.errors import UserError
from zoo.golden import JSON, NPZ, check_golden, read_golden, write_golden
from zoo.store import sha256_of

META = {"variant": "resnext50_32x4d", "source": "torchvision", "tag": "IMAGENET1K_V1", "output": "logits", "seed": 0}


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """(ONNX Runtime session runner, inputs, torch references) for a canonical resnext50_32x4d ONNX."""
    import onnxruntime as ort

    from zoo.converters.spec import OnnxSpec
    from zoo.validators.inputs import parity_inputs

    spec = OnnxSpec(opset=17, input_name="input", output_name="output", dynamic_batch=True, batch=1)
    c = export_canonical(tmp_path_factory.mktemp("canonical"), spec)
    inputs = parity_inputs(c["input"], seed=0, n_random=1, n_images=2)
    references = {name: c["adapter"].run(c["model"], x) for name, x in inputs.items()}
    sess = ort.InferenceSession(str(c["path"]), providers=["CPUExecutionProvider"])
    return (lambda x: sess.run(None, {"input": x})[0]), inputs, references


@pytest.fixture(scope="module")
def golden(canonical, tmp_path_factory):
    _, inputs, references = canonical
    folder = tmp_path_factory.mktemp("artifact")
    files = write_golden(folder, inputs, references, META)
    return folder, files


def test_write_stores_inputs_references_and_what_they_are(golden, canonical):
    _, inputs, references = canonical
    folder, files = golden
    assert files == [folder / NPZ, folder / JSON]
    assert sorted(p.name for p in folder.iterdir()) == [JSON, NPZ]  # no temporary files left
    doc = json.loads((folder / JSON).read_text())
    assert {k: doc[k] for k in META} == META
    assert doc["npz"]["sha256"] == sha256_of(folder / NPZ) and doc["npz"]["size"] == (folder / NPZ).stat().st_size
    assert doc["sets"] == {
        "images": {"input": {"shape": [2, 3, 224, 224], "dtype": "float32"},
                   "reference": {"shape": [2, 1000], "dtype": "float32"}},
        "random": {"input": {"shape": [1, 3, 224, 224], "dtype": "float32"},
                   "reference": {"shape": [1, 1000], "dtype": "float32"}},
    }
    _, back_in, back_ref = read_golden(folder)
    for name in inputs:
        assert np.array_equal(back_in[name], inputs[name]) and np.array_equal(back_ref[name], references[name])


def test_onnx_runtime_reproduces_the_source_outputs(golden, canonical):
    run, _, _ = canonical
    result = check_golden(golden[0], run, "fp32")
    assert result["passed"] and set(result["sets"]) == {"images", "random"}
    assert result["golden"] == {**META, "sha256": sha256_of(golden[0] / NPZ)}
    for p in result["sets"].values():
        assert p["passed"] and p["cosine"] > 0.99999 and p["max_abs"] <= 1e-4 * p["ref_scale"]
        assert p["top1_agreement"] == 1.0


def test_fp16_rounding_fails_the_fp32_gate_and_passes_the_fp16_gate(golden, canonical):
    run, _, _ = canonical
    # The artifact's outputs rounded to float16: what an fp16 engine's output tensor carries at best.
    fp16_like = lambda x: run(x).astype(np.float16).astype(np.float32)  # noqa: E731
    as_fp32 = check_golden(golden[0], fp16_like, "fp32")
    as_fp16 = check_golden(golden[0], fp16_like, "fp16")
    assert not as_fp32["passed"] and as_fp16["passed"]
    for name, p in as_fp32["sets"].items():
        assert not p["passed"] and p["max_abs"] > 1e-4 * p["ref_scale"]  # the fp32 max-abs gate is what fails
        assert p["cosine"] > 0.999 and as_fp16["sets"][name]["passed"]


def test_a_wrong_artifact_fails_every_gate(golden, canonical):
    run, _, _ = canonical
    shifted = lambda x: np.roll(run(x), 1, axis=1)  # noqa: E731  (outputs in the wrong class order)
    for precision in ("fp32", "fp16", "int8"):
        result = check_golden(golden[0], shifted, precision)
        assert not result["passed"] and all(not p["passed"] for p in result["sets"].values())


def test_a_wrong_output_shape_is_a_failed_set_not_a_crash(golden, canonical):
    run, _, _ = canonical
    result = check_golden(golden[0], lambda x: run(x)[:, :10], "fp32")
    assert not result["passed"]
    assert all("shapes differ" in p["error"] for p in result["sets"].values())


def _copy(folder: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    dst.mkdir()
    for name in (NPZ, JSON):
        (dst / name).write_bytes((folder / name).read_bytes())
    return dst


def test_a_tampered_npz_is_refused_before_anything_runs(golden, canonical, tmp_path):
    _, inputs, references = canonical
    folder = _copy(golden[0], tmp_path)
    changed = {f"inputs/{k}": v for k, v in inputs.items()} | {f"references/{k}": v for k, v in references.items()}
    changed["references/random"] = references["random"] + 1.0  # new "expected" outputs, same shapes
    with open(folder / NPZ, "wb") as f:
        np.savez(f, **changed)
    calls = []
    with pytest.raises(UserError, match=r"sha256 .* golden set was modified, convert again with golden=true"):
        check_golden(folder, lambda x: calls.append(x) or x, "fp32")
    assert calls == []


def test_a_json_that_disagrees_with_the_npz_is_refused(golden, tmp_path):
    folder = _copy(golden[0], tmp_path)
    doc = json.loads((folder / JSON).read_text())
    doc["sets"]["random"]["input"]["shape"] = [4, 3, 224, 224]
    (folder / JSON).write_text(json.dumps(doc))
    with pytest.raises(UserError, match="inputs/random does not match golden.json"):
        read_golden(folder)


def test_missing_golden_files_say_how_to_make_them(golden, tmp_path):
    with pytest.raises(UserError, match=r"golden.npz and golden.json missing\): convert with golden=true"):
        check_golden(tmp_path, lambda x: x, "fp32")
    folder = _copy(golden[0], tmp_path)
    (folder / JSON).unlink()
    with pytest.raises(UserError, match=r"\(golden.json missing\): convert with golden=true"):
        check_golden(folder, lambda x: x, "fp32")


def test_write_refuses_incomplete_meta_and_mismatched_sets(tmp_path):
    x, y = np.zeros((1, 3, 8, 8), np.float32), np.zeros((1, 10), np.float32)
    with pytest.raises(ValueError, match="seed"):
        write_golden(tmp_path, {"a": x}, {"a": y}, {k: v for k, v in META.items() if k != "seed"})
    with pytest.raises(ValueError, match="differ"):
        write_golden(tmp_path, {"a": x}, {"b": y}, META)
    assert not any(tmp_path.iterdir())
