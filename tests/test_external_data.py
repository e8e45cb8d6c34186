"""The >2 GiB path of the canonical ONNX, exercised on ResNeXt-50 with the size limit lowered.

The real 3 GiB case (resnext101_32x48d) runs end to end in test_wsl_giants.py; here the same code
runs in seconds: the weights go to one external data file, streamed, from either exporter layout.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from zoo.converters import onnx_canonical
from zoo.converters.spec import OnnxSpec
from zoo.converters.sources import get_adapter
from zoo.registry.loader import load_registry
from zoo.registry.query import resolve_variant, select_weights

SMALL_LIMIT = 4 * 2**20  # bytes: ResNeXt-50's 100 MB of weights count as "over the limit"


@pytest.fixture(scope="module")
def raw_export(tmp_path_factory):
    """A raw torchvision ResNeXt-50 export (self-contained), and the model's own outputs."""
    folder = tmp_path_factory.mktemp("raw")
    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    w = select_weights(reg, v, "torchvision", None)
    adapter = get_adapter("torchvision")
    model = adapter.fresh(v, w, 0)
    spec = OnnxSpec()
    adapter.export_onnx(model, folder / "raw.onnx", spec, 224)
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224), dtype=np.float32)
    return {"raw": folder / "raw.onnx", "spec": spec, "x": x, "y": adapter.run(model, x)}


def _run(path, x, cwd=None):
    """ONNX Runtime on ``path`` opened by a path relative to ``cwd`` (the model's data file must be
    found next to the model, not in the working directory)."""
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
            path = os.path.relpath(path, cwd)
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    finally:
        os.chdir(old)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("layout", ["one-file", "file-per-tensor"])
def test_over_the_limit_writes_one_data_file_beside_the_model(raw_export, tmp_path, monkeypatch, layout):
    # the exporters' two layouts: paddle export writes one data file, torch's writes one per tensor
    src = tmp_path / "src"
    src.mkdir()
    model = onnx.load(str(raw_export["raw"]))
    onnx.save_model(model, str(src / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=layout == "one-file", location="weights.bin", size_threshold=1024)
    monkeypatch.setattr(onnx_canonical, "PROTOBUF_LIMIT", SMALL_LIMIT)
    out = tmp_path / "canonical"
    out.mkdir()
    made = onnx_canonical.finish(src / "model.onnx", out / "model.onnx", raw_export["spec"], 224, {"zoo.variant": "x"})

    assert [p.name for p in made.files] == ["model.onnx", "model.onnx.data"]
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert (out / "model.onnx").stat().st_size < SMALL_LIMIT < (out / "model.onnx.data").stat().st_size
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    locations = {e.value for t in graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"model.onnx.data"}
    assert made.simplify["applied"] is False and "2 GiB" in made.simplify["skipped"]
    # runs from another working directory, and computes what the source model computes
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.testing.assert_allclose(_run(out / "model.onnx", raw_export["x"], cwd=elsewhere), raw_export["y"],
                               rtol=1e-4, atol=1e-4)


def test_large_path_is_byte_identical_across_runs_and_matches_the_small_path(raw_export, tmp_path, monkeypatch):
    spec = OnnxSpec(simplify=False)  # same graph on both paths: only where the weights live differs
    (tmp_path / "small").mkdir()
    onnx_canonical.finish(raw_export["raw"], tmp_path / "small" / "model.onnx", spec, 224, {})
    monkeypatch.setattr(onnx_canonical, "PROTOBUF_LIMIT", SMALL_LIMIT)
    digests = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        onnx_canonical.finish(raw_export["raw"], tmp_path / run / "model.onnx", spec, 224, {})
        digests.append((_sha(tmp_path / run / "model.onnx"), _sha(tmp_path / run / "model.onnx.data")))
    assert digests[0] == digests[1]
    small = _run(tmp_path / "small" / "model.onnx", raw_export["x"])
    np.testing.assert_array_equal(_run(tmp_path / "a" / "model.onnx", raw_export["x"]), small)


def test_external_data_writer_streams_arrays_that_onnx_reads_back(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"w": rng.standard_normal((64, 3, 7, 7)).astype(np.float32), "b": np.arange(5, dtype=np.int64)}
    writer = onnx_canonical.ExternalDataWriter(tmp_path / "m.onnx.data")
    tensors = [writer.tensor(a, name) for name, a in arrays.items()]
    writer.close()
    assert (tmp_path / "m.onnx.data").stat().st_size == sum(a.nbytes for a in arrays.values())
    for t in tensors:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(t, base_dir=str(tmp_path)), arrays[t.name])
