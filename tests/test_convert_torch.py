"""torchvision, timm and mmcls to canonical ONNX: real libraries, real checkpoints, real ONNX Runtime."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import make_checkpoint, manifest_of, run_zoo

TORCH_SOURCES = {"torchvision": "IMAGENET1K_V1", "timm": "a1h_in1k", "mmcls": "8xb32_in1k"}


@pytest.mark.parametrize("source", list(TORCH_SOURCES))
def test_checkpoint_in_source_format_converts_and_validates(tmp_path, source):
    suffix = ".safetensors" if source == "timm" else ".pth"
    ckpt = make_checkpoint("resnext50_32x4d", source, tmp_path / f"ckpt{suffix}", seed=3)
    if source == "mmcls":  # OpenMMLab's own layout
        raw = torch.load(ckpt, weights_only=True)
        assert set(raw) == {"state_dict", "meta"} and "backbone.conv1.weight" in raw["state_dict"]
        assert "head.fc.weight" in raw["state_dict"]
    out = tmp_path / "artifacts"
    proc = run_zoo("convert", "model=resnext50_32x4d", f"source={source}", f"weights={ckpt}", f"out_dir={out}")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "[PASSED]" in proc.stdout
    m = manifest_of(out, "resnext50_32x4d", source, TORCH_SOURCES[source])
    v = m["validation"]
    assert m["status"] == "passed" and m["weights"]["mode"] == "file"
    assert v["params"]["graph"] == v["params"]["architecture"] == 25028904
    assert v["macs"]["graph"] == v["macs"]["architecture"]
    for p in v["parity"]["sets"].values():
        assert p["cosine"] >= 0.99999 and p["max_abs"] <= 1e-4 * p["ref_scale"]
    model_path = out / "resnext50_32x4d" / source / TORCH_SOURCES[source] / "onnx" / "model.onnx"
    model = onnx.load(model_path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["zoo.source"] == source and meta["zoo.variant"] == "resnext50_32x4d"
    import hashlib

    assert meta["zoo.weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() == m["weights"]["sha256"]
    assert len(json.loads(meta["zoo.labels"])) == 1000
    pre = json.loads(meta["zoo.preprocessing"])
    assert pre["size"] == 224 and pre["resize"] == (235 if source == "timm" else 256)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["output"]
    assert m["artifact"]["files"][0]["sha256"] == hashlib.sha256(model_path.read_bytes()).hexdigest()


def test_random_weights_dry_run_is_deterministic_and_cached(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["convert", "model=resnext50_32x4d", "source=torchvision", "weights=random"]
    pa = run_zoo(*args, f"out_dir={a}")
    pb = run_zoo(*args, f"out_dir={b}")
    assert pa.returncode == 0 and pb.returncode == 0, pa.stderr + pb.stderr
    rel = Path("resnext50_32x4d/torchvision/IMAGENET1K_V1/onnx/model.onnx")
    assert (a / rel).read_bytes() == (b / rel).read_bytes()  # byte-identical
    m = manifest_of(a, "resnext50_32x4d", "torchvision", "IMAGENET1K_V1")
    assert m["weights"]["mode"] == "random" and m["validation"]["accuracy"]["skipped"] == "weights=random"
    mtime = (a / rel).stat().st_mtime_ns
    again = run_zoo(*args, f"out_dir={a}")
    assert again.returncode == 0 and "(cache hit)" in again.stdout
    assert (a / rel).stat().st_mtime_ns == mtime
    forced = run_zoo(*args, f"out_dir={a}", "force=true")
    assert forced.returncode == 0 and "(cache hit)" not in forced.stdout
    assert (a / rel).read_bytes() == (b / rel).read_bytes()
    # no staging leftovers; the build lock beside the artifact stays (deleting it would race a waiter)
    assert sorted(p.name for p in (a / rel).parent.parent.iterdir()) == [".onnx.lock", "onnx"]


def test_static_batch_and_opset(tmp_path):
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=timm", "weights=random", f"out_dir={tmp_path}",
                   "target.dynamic_batch=false", "target.batch=2", "target.opset=13")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    model = onnx.load(tmp_path / "resnext50_32x4d/timm/a1h_in1k/onnx/model.onnx")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 224, 224]
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {13}


def test_checkpoint_that_does_not_fit_lists_offenders(tmp_path):
    ckpt = make_checkpoint("resnext50_32x4d", "torchvision", tmp_path / "ok.pth")
    state = torch.load(ckpt, weights_only=True)
    del state["fc.bias"]
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    state["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=torchvision", f"weights={bad}", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in ("missing 1 (fc.bias)", "unexpected 1 (extra.weight)", "conv1.weight: checkpoint (32, 3, 7, 7) vs model (64, 3, 7, 7)"):
        assert needle in proc.stderr
    assert not (tmp_path / "out" / "resnext50_32x4d" / "torchvision" / "IMAGENET1K_V1" / "onnx").exists()


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_with_pickled_callable_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        pickle.dump({"conv1.weight": _Payload(str(marker))}, f)
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=torchvision", f"weights={bad}", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 2 and "refusing to load" in proc.stderr, proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["convert"], "convert needs a variant"),
        (["convert", "model=resnext50_32x4d", "weights=/nonexistent.pth"], "weights=/nonexistent.pth: no such file"),
        (["convert", "model=resnext50_64x4d", "source=mindcv", "weights=random"], "is not published by mindcv"),
        (["convert", "model=resnext50_32x4d", "target=tflite"], "unknown target 'tflite'"),
        (["convert", "model=resnext50_32x4d", "target.batch=0", "target.dynamic_batch=false"], "target.batch=0"),
        (["convert", "model=resnext50_32x4d", "source=timm", "tag=nope"], "has no tag 'nope'"),
    ],
)
def test_convert_bad_input(tmp_path, args, needle):
    proc = run_zoo(*args, f"out_dir={tmp_path}")
    assert proc.returncode == 2, proc.stderr + proc.stdout
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2


def test_cross_source_identity_resnext50_32x4d(tmp_path):
    """torchvision, timm's tv tag and mmcls give the same graph and outputs on the same weights."""
    import onnxruntime as ort

    from zoo.validators.structure import analyse

    tv = make_checkpoint("resnext50_32x4d", "torchvision", tmp_path / "tv.pth", seed=7)
    state = torch.load(tv, weights_only=True)
    torch.save(state, tmp_path / "timm.pth")  # timm's ResNet uses torchvision's key names
    mm = {("head." + k if k.startswith("fc.") else "backbone." + k): v for k, v in state.items()}
    torch.save({"state_dict": mm, "meta": {}}, tmp_path / "mmcls.pth")
    ckpts = {("torchvision", "IMAGENET1K_V1"): tv, ("timm", "tv_in1k"): tmp_path / "timm.pth",
             ("mmcls", "8xb32_in1k"): tmp_path / "mmcls.pth"}
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    outputs, structures = {}, {}
    for (source, tag), ckpt in ckpts.items():
        proc = run_zoo("convert", "model=resnext50_32x4d", f"source={source}", f"tag={tag}", f"weights={ckpt}",
                       f"out_dir={tmp_path / 'out'}")
        assert proc.returncode == 0, proc.stderr + proc.stdout
        path = tmp_path / "out" / "resnext50_32x4d" / source / tag / "onnx" / "model.onnx"
        structures[source] = analyse(onnx.load(path))
        outputs[source] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    compute = ("Conv", "Gemm", "Add", "Relu", "MaxPool", "GlobalAveragePool")  # flatten glue may differ
    ref = structures["torchvision"]
    for source, s in structures.items():
        ops = {k: v for k, v in s.op_counts.items() if k in compute}
        assert (s.params, s.macs, ops) == (ref.params, ref.macs, {k: v for k, v in ref.op_counts.items() if k in compute}), source
        np.testing.assert_allclose(outputs[source], outputs["torchvision"], rtol=0, atol=1e-5 * np.abs(outputs["torchvision"]).max())
    assert ref.params == 25028904


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_a_model_loaded_from_a_checkpoint_skips_the_random_init_and_equals_the_saved_one(tmp_path, source,
                                                                                       monkeypatch):
    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    w = select_weights(reg, v, source, None)
    adapter = get_adapter(source)
    fresh = adapter.fresh(v, w, seed=3)
    adapter.save_checkpoint(fresh, tmp_path / "c.pth")
    inits = []
    real = torch.nn.init.kaiming_normal_

    def spy(tensor, *args, **kwargs):  # the builders' conv init: on real memory it is the cost being saved
        inits.append(tensor.is_meta)
        return real(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_normal_", spy)
    loaded = adapter.build(v, w, tmp_path / "c.pth")
    assert inits and all(inits)  # every init ran on the meta device: no real weights were drawn
    assert not any(t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    assert np.array_equal(adapter.run(loaded, x), adapter.run(fresh, x))
    own, saved = loaded.state_dict(), fresh.state_dict()
    assert own.keys() == saved.keys() and all(torch.equal(own[k], saved[k]) for k in own)
