"""PaddleClas's ResNeXt families as re-implemented in zoo, checked against PaddleClas's own code.

PaddleClas itself cannot be installed beside the zoo (its pins conflict), so the reference is its
2.6.0 wheel, downloaded once per session; only the three ResNeXt model files are loaded from it,
with a stub for their one relative import. Every model is compared structurally under
``paddle.LazyGuard()`` (no weights allocated, so the 3.3 GB ResNeXt101_32x48d_wsl costs nothing);
one model per family is also built for real and compared numerically.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import re
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest

paddle = pytest.importorskip("paddle")

from zoo.converters.sources.paddle_export import PaddleExportError, paddle_to_onnx  # noqa: E402
from zoo.converters.sources.pdparams import (  # noqa: E402
    load_into, load_pdparams, read_pdparams, save_layer_state, save_pdparams,
)
from zoo.converters.sources.ppcls_arch import PPCLS_MODEL_NAMES, build_ppcls_model  # noqa: E402
from zoo.errors import UserError  # noqa: E402

PADDLECLAS = "paddleclas==2.6.0"
MODEL_FILES = ("resnext", "resnext_vd", "resnext101_wsl")
STUB = "_ppcls_reference"


# --------------------------------------------------------------------------- PaddleClas's own code


@pytest.fixture(scope="module")
def ppcls(tmp_path_factory):
    """PaddleClas's model factories by name (``ResNeXt50_vd_32x4d`` -> function), from its wheel."""
    where = tmp_path_factory.mktemp("paddleclas")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             PADDLECLAS, "-d", str(where)],
            capture_output=True, text=True, timeout=180,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot download {PADDLECLAS}: {e}")
    wheels = list(where.glob("paddleclas-*.whl"))
    if proc.returncode != 0 or not wheels:
        said = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        pytest.skip(f"cannot download {PADDLECLAS}: {said[-1]}")

    stubs = {}
    for name in (STUB, f"{STUB}.utils", f"{STUB}.utils.save_load"):
        stubs[name] = types.ModuleType(name)
        stubs[name].__path__ = []
    stubs[f"{STUB}.utils.save_load"].load_dygraph_pretrain = lambda *a, **k: None
    sys.modules.update(stubs)
    factories = {}
    with zipfile.ZipFile(wheels[0]) as wheel:
        for stem in MODEL_FILES:
            source = wheel.read(f"paddleclas/ppcls/arch/backbone/model_zoo/{stem}.py")
            path = where / f"{stem}.py"
            path.write_bytes(source)
            # ``from ....utils.save_load import ...`` resolves four levels up, to the stub package
            full = f"{STUB}.arch.backbone.model_zoo.{stem}"
            spec = importlib.util.spec_from_file_location(full, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            factories.update({n: getattr(module, n) for n in module.__all__})
    yield factories
    for name in stubs:
        sys.modules.pop(name, None)


def build_theirs(ppcls, name, **kwargs):
    with paddle.utils.unique_name.guard():  # as build_ppcls_model does: PaddleClas names every parameter
        return ppcls[name](**kwargs)


def signature(layer):
    """Everything a checkpoint or an exported program sees of a model's structure."""
    return {
        "state_dict": [(k, tuple(v.shape), str(v.dtype), v.name, v.stop_gradient) for k, v in layer.state_dict().items()],
        "parameters": [p.name for p in layer.parameters()],
        "buffers": [b.name for b in layer.buffers()],
        "sublayers": [(n, type(s).__name__ if type(s).__module__.startswith("paddle.") else "")
                      for n, s in layer.named_sublayers()],
    }


def assert_same_structure(ours, theirs):
    a, b = signature(ours), signature(theirs)
    for part in a:
        assert len(a[part]) == len(b[part]), part
        for x, y in zip(a[part], b[part]):
            assert x == y, f"{part}: ours {x} vs PaddleClas {y}"


# --------------------------------------------------------------------------- architecture


def test_model_names_are_paddleclas_names(ppcls):
    assert set(PPCLS_MODEL_NAMES) == set(ppcls)
    assert len(PPCLS_MODEL_NAMES) == 16


@pytest.mark.parametrize("name", PPCLS_MODEL_NAMES)
def test_structure_matches_paddleclas(ppcls, name):
    """Keys, order, shapes, dtypes, parameter/buffer names and sublayer tree: no weights allocated."""
    with paddle.LazyGuard():
        assert_same_structure(build_ppcls_model(name), build_theirs(ppcls, name))


def test_num_classes_and_building_twice(ppcls):
    with paddle.LazyGuard():
        ours = build_ppcls_model("ResNeXt101_vd_64x4d", num_classes=10)
        again = build_ppcls_model("ResNeXt101_vd_64x4d", num_classes=10)  # Paddle's name check allows it
        assert_same_structure(ours, build_theirs(ppcls, "ResNeXt101_vd_64x4d", class_num=10))
    assert tuple(again.state_dict()["out.weight"].shape) == (2048, 10)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UserError) as e:
        build_ppcls_model("ResNeXt50_vd_32x8d")
    msg = str(e.value)
    assert "\n" not in msg and "'ResNeXt50_vd_32x8d'" in msg
    assert all(n in msg for n in PPCLS_MODEL_NAMES)


def random_state(layer, seed=0):
    """Random weights and BN statistics that keep activations O(1) through 100+ layers."""
    rng = np.random.default_rng(seed)
    state = {}
    for key, value in layer.state_dict().items():
        shape = tuple(value.shape)
        if key.endswith(("_variance",)):
            arr = rng.uniform(0.5, 2.0, shape)
        elif key.endswith("_mean"):
            arr = rng.normal(0.0, 0.2, shape)
        elif len(shape) == 1 and key.endswith(".weight"):  # BN scale: damp each residual branch
            arr = rng.uniform(0.1, 0.4, shape)
        elif len(shape) == 4:
            arr = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        else:
            arr = rng.normal(0.0, 0.1, shape)
        state[key] = arr.astype(np.float32)
    return state


@pytest.mark.parametrize("name", ["ResNeXt50_32x4d", "ResNeXt50_vd_64x4d", "ResNeXt101_32x8d_wsl"])
def test_same_weights_same_outputs(ppcls, tmp_path, name):
    """Built for real: same fresh init for the same seed, then one PaddleClas-format checkpoint loaded
    into both (PaddleClas's way: ``set_dict(paddle.load)``; ours: the safe loader), same outputs."""
    paddle.seed(1234)
    theirs = build_theirs(ppcls, name)
    paddle.seed(1234)
    ours = build_ppcls_model(name)
    assert_same_structure(ours, theirs)
    for (key, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), f"fresh init differs at {key}"

    ckpt = tmp_path / f"{name}_pretrained.pdparams"
    save_pdparams(random_state(theirs), ckpt, names={k: v.name for k, v in theirs.state_dict().items()})
    theirs.set_dict(paddle.load(str(ckpt)))
    load_into(ours, load_pdparams(ckpt), name)
    ours.eval()
    theirs.eval()

    # 56 px: stage 3 sees 7x7, so the vd shortcut's ceil_mode pooling and the stride-2 padding matter
    x = paddle.to_tensor(np.random.default_rng(1).normal(size=(2, 3, 56, 56)).astype(np.float32))
    y_ours, y_theirs = ours(x).numpy(), theirs(x).numpy()
    assert y_ours.shape == (2, 1000)
    assert 0.1 < np.abs(y_theirs).max() < 1e4  # a meaningful signal, neither vanished nor exploded
    np.testing.assert_allclose(y_ours, y_theirs, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- .pdparams


@pytest.fixture(scope="module")
def vd_model():
    paddle.seed(7)
    model = build_ppcls_model("ResNeXt50_vd_32x4d")
    model.eval()
    return model


@pytest.mark.parametrize("protocol", [2, 4])
def test_load_pdparams_reads_paddle_save_exactly(vd_model, tmp_path, protocol):
    path = tmp_path / "model.pdparams"
    paddle.save(vd_model.state_dict(), str(path), protocol=protocol)
    arrays, names = read_pdparams(path)
    reference = paddle.load(str(path), return_numpy=True)
    assert list(arrays) == list(reference) == list(vd_model.state_dict())
    for key, value in reference.items():
        assert arrays[key].dtype == value.dtype and np.array_equal(arrays[key], value), key
    # the structured -> parameter name table paddle.save records
    assert names == {k: v.name for k, v in vd_model.state_dict().items()}
    assert names["bb_0_0.conv0._conv.weight"] == "res2a_branch2a_weights"
    assert names["conv1_1._batch_norm._mean"] == "bnv1_1_mean"
    assert names["bb_3_0.short._batch_norm._variance"] == "bn5a_branch1_variance"


def test_save_pdparams_writes_what_paddle_save_writes(vd_model, tmp_path):
    theirs, ours = tmp_path / "paddle.pdparams", tmp_path / "zoo.pdparams"
    state = vd_model.state_dict()
    paddle.save(state, str(theirs))
    save_pdparams({k: v.numpy() for k, v in state.items()}, ours, names={k: v.name for k, v in state.items()})
    assert ours.read_bytes() == theirs.read_bytes()
    again = paddle.load(str(ours))
    assert all(np.array_equal(again[k].numpy(), v.numpy()) for k, v in state.items())


def test_save_layer_state_holds_what_paddle_save_holds(vd_model, tmp_path):
    theirs, ours = tmp_path / "paddle.pdparams", tmp_path / "zoo.pdparams"
    paddle.save(vd_model.state_dict(), str(theirs))
    save_layer_state(vd_model, ours)
    a, b = paddle.load(str(theirs)), paddle.load(str(ours))
    assert list(a) == list(b)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) and a[k].name == b[k].name for k in a)
    arrays, names = read_pdparams(ours)
    assert names == read_pdparams(theirs)[1]
    assert all(np.array_equal(arrays[k], v.numpy()) for k, v in vd_model.state_dict().items())


class _Reduce:
    """Unpickles as ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pdparams_is_refused_without_running(tmp_path, protocol):
    marker, control = tmp_path / "pwned", tmp_path / "control"
    state = {"conv._conv.weight": np.ones((4, 3, 1, 1), np.float32), "out.bias": _Reduce(os.system, f"touch {marker}")}
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps(state, protocol=protocol))

    with pytest.raises(UserError) as e:
        load_pdparams(path)
    assert not marker.exists()
    assert re.search(rf"refusing to load {re.escape(str(path))}: it contains a pickled callable (posix|nt|os)\.system; "
                     r"only arrays are allowed", str(e.value))

    # the payload is live: the stock unpickler (what paddle.load uses) runs it
    pickle.loads(pickle.dumps(_Reduce(os.system, f"touch {control}"), protocol=protocol))
    assert control.exists()


def test_other_globals_and_non_arrays_are_refused(tmp_path):
    path = tmp_path / "eval.pdparams"  # how paddle pickles a raw DenseTensor: eval('data', {'data': array})
    path.write_bytes(pickle.dumps({"w": _Reduce(eval, "data", {"data": np.ones(2)})}))
    with pytest.raises(UserError, match=r"pickled callable builtins\.eval"):
        load_pdparams(path)
    path.write_bytes(pickle.dumps({"w": np.array(["a", 1], dtype=object)}))
    with pytest.raises(UserError, match="not a numeric array"):
        load_pdparams(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a readable .pdparams"):
        load_pdparams(path)


def test_load_into_lists_offenders():
    with paddle.LazyGuard():
        model = build_ppcls_model("ResNeXt50_32x4d")
    state = {k: np.zeros(tuple(v.shape), np.float32) for k, v in model.state_dict().items()}
    del state["out.weight"], state["out.bias"]
    state["fc.w"] = np.zeros(3, np.float32)
    state["conv._conv.weight"] = np.zeros((32, 3, 7, 7), np.float32)
    with pytest.raises(UserError) as e:
        load_into(model, state, "ResNeXt50_32x4d")
    msg = str(e.value)
    assert msg.startswith("checkpoint does not fit ResNeXt50_32x4d: ")
    assert "missing 2 (out.weight, out.bias)" in msg
    assert "unexpected 1 (fc.w)" in msg
    assert "shape mismatch 1 (conv._conv.weight: checkpoint (32, 3, 7, 7) vs model (64, 3, 7, 7))" in msg


# --------------------------------------------------------------------------- ONNX


def test_paddle_to_onnx_matches_paddle(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    paddle.seed(11)
    model = build_ppcls_model("ResNeXt50_vd_32x4d")
    model.eval()
    # spread the logits (std ~3) so the softmax output is informative, not ~1/1000 everywhere
    x1 = np.random.default_rng(3).normal(size=(1, 3, 64, 64)).astype(np.float32)
    scale = 3.0 / float(np.std(model(paddle.to_tensor(x1)).numpy()))
    model.out.weight.set_value(model.out.weight.numpy() * scale)

    path = paddle_to_onnx(model, tmp_path / "m.onnx", opset=17, dynamic_batch=True, size=64, input_name="image")
    assert path == tmp_path / "m.onnx"
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = np.random.default_rng(batch).normal(size=(batch, 3, 64, 64)).astype(np.float32)
        expected = paddle.nn.functional.softmax(model(paddle.to_tensor(x)), axis=-1).numpy()
        (got,) = session.run(None, {"image": x})
        assert got.shape == (batch, 1000)
        assert expected.max() > 0.01  # peaked enough for the comparison to mean something
        assert np.abs(got - expected).max() < 1e-5
        np.testing.assert_allclose(got.sum(axis=-1), 1.0, atol=1e-5)


def test_paddle_to_onnx_external_weights(vd_model, tmp_path, monkeypatch):
    """The >2 GiB route (weights attached after conversion, in <out>.data), forced on a small model."""
    ort = pytest.importorskip("onnxruntime")
    import zoo.converters.sources.paddle_export as paddle_export

    monkeypatch.setattr(paddle_export, "EXTERNAL_WEIGHTS_ABOVE", 0)
    path = paddle_to_onnx(vd_model, tmp_path / "m.onnx", opset=17, dynamic_batch=False, batch=2, size=64,
                          append_softmax=False)
    data = tmp_path / "m.onnx.data"
    assert data.stat().st_size > 90 * 2**20 > path.stat().st_size  # ~25M float32 weights live beside
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[2, 3, 64, 64]]
    x = np.random.default_rng(5).normal(size=(2, 3, 64, 64)).astype(np.float32)
    (got,) = session.run(None, {"input": x})
    np.testing.assert_allclose(got, vd_model(paddle.to_tensor(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_paddle_to_onnx_reports_an_impossible_opset(vd_model, tmp_path):
    # paddle2onnx aborts its process here; the export must survive it and say why
    with pytest.raises(PaddleExportError, match=r"opset 9 .*opset_version to 10"):
        paddle_to_onnx(vd_model, tmp_path / "m.onnx", opset=9, dynamic_batch=False, size=64)
    assert not (tmp_path / "m.onnx").exists()
