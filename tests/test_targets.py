"""The targets that run here (ONNX fp16/int8, OpenVINO), end to end through `zoo convert`, and the
target-independent rules: precision support, default precision, parity gates, cache hits."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from conftest import manifest_of, run_zoo

MODEL = "resnext50_32x4d"
TAG = "IMAGENET1K_V1"


def _convert(out_dir, *args):
    proc = run_zoo("convert", f"model={MODEL}", "source=torchvision", "weights=random", f"out_dir={out_dir}",
                   "progress=false", *args)
    return proc


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


@pytest.mark.parametrize("target, precision, folder, min_cos", [
    ("onnx", "fp16", "onnx-fp16", 0.999),
    ("onnx", "int8", "onnx-int8", 0.99),
    ("openvino", "fp32", "openvino", 0.99999),
    ("openvino", "fp16", "openvino-fp16", 0.999),
    ("openvino", "int8", "openvino-int8", 0.99),
])
def test_runnable_targets_pass_their_parity_gate(out_dir, target, precision, folder, min_cos):
    proc = _convert(out_dir, f"target={target}", f"precision={precision}")
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    m = manifest_of(out_dir, MODEL, "torchvision", TAG, folder)
    assert (m["status"], m["target"], m["precision"]) == ("passed", target, precision)
    parity = m["validation"]["target"]["parity"]
    assert parity["against"] == "canonical ONNX on ONNX Runtime"
    for name, p in parity["sets"].items():
        assert p["cosine"] >= min_cos and p["passed"], (name, p)
        assert p["top1_agreement"] >= 0.5  # reported for every precision; int8 gates on cosine
        if precision == "fp32":
            assert p["max_abs"] <= 1e-4 * p["ref_scale"]
    assert m["artifact"]["compiled"] is True
    assert all(c["passed"] for c in m["validation"]["target"]["checks"])
    assert f"{target} {precision}" in proc.stdout and "(vs ONNX)" in proc.stdout


def test_fp16_onnx_is_float16_inside_with_float32_io(out_dir):
    path = out_dir / MODEL / "torchvision" / TAG / "onnx-fp16" / "model.onnx"
    if not path.exists():
        assert _convert(out_dir, "target=onnx", "precision=fp16").returncode == 0
    model = onnx.load(str(path))
    f16 = sum(1 for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    f32 = sum(1 for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT)
    assert f16 > 100 and f32 == 0
    io = [v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)]
    assert io == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]


def test_int8_onnx_is_uint8_activations_and_per_channel_symmetric_int8_weights(out_dir):
    """ONNX Runtime's fast x86 recipe: u8 activations (zero points anywhere in 0-255), s8 weights."""
    path = out_dir / MODEL / "torchvision" / TAG / "onnx-int8" / "model.onnx"
    if not path.exists():
        assert _convert(out_dir, "target=onnx", "precision=int8").returncode == 0
    model = onnx.load(str(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    conv_inputs = {i for n in model.graph.node if n.op_type == "Conv" for i in n.input}
    weight_dq = [n for n in dq if n.output[0] in conv_inputs and n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert len(weight_dq) >= 50  # every conv weight is int8
    for n in weight_dq:
        scale, zero = inits[n.input[1]], inits[n.input[2]]
        assert inits[n.input[0]].dtype == np.int8
        assert scale.ndim == 1 and scale.size == inits[n.input[0]].shape[0]  # per output channel
        assert not zero.any()  # symmetric weights
    activations = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert len(activations) >= 50
    assert {inits[n.input[2]].dtype for n in activations} == {np.dtype(np.uint8)}
    m = manifest_of(out_dir, MODEL, "torchvision", TAG, "onnx-int8")
    info = m["artifact"]["info"]
    assert info["per_channel"] and info["weight_symmetric"] and not info["activation_symmetric"]
    assert (info["activation"], info["weight"], info["calibration_images"]) == ("QUInt8", "QInt8", 32)


def test_int8_openvino_ir_is_quantized_by_nncf(out_dir):
    import openvino as ov

    xml = out_dir / MODEL / "torchvision" / TAG / "openvino-int8" / "model.xml"
    if not xml.exists():
        assert _convert(out_dir, "target=openvino", "precision=int8").returncode == 0
    ops = ov.Core().read_model(str(xml)).get_ordered_ops()
    fq = [op for op in ops if op.get_type_name() == "FakeQuantize"]
    convs = [op for op in ops if op.get_type_name() in ("Convolution", "GroupConvolution")]
    i8 = [op for op in ops if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]
    assert len(fq) >= 50 and len(i8) >= len(convs) - 1  # activations quantized, conv weights stored as int8
    m = manifest_of(out_dir, MODEL, "torchvision", TAG, "openvino-int8")
    assert m["calibration"]["source"] == "generated" and m["calibration"]["images"] == 32
    assert m["tools"].get("nncf") and "nncf" in m["artifact"]["info"]["tool"]


def test_a_rerun_is_a_cache_hit_and_force_rebuilds(out_dir):
    assert _convert(out_dir, "target=openvino").returncode == 0
    again = _convert(out_dir, "target=openvino")
    assert again.returncode == 0 and "(cache hit)" in again.stdout
    forced = _convert(out_dir, "target=openvino", "force=true")
    assert forced.returncode == 0 and "(cache hit)" not in forced.stdout


@pytest.mark.parametrize("args, needle", [
    (["target=bpu", "precision=fp32"], "target bpu does not support precision fp32; it supports int8"),
    (["target=mindir", "precision=int8"], "it supports fp32"),
    (["target=onnx", "precision=int8", "target.int8.calibrate_method=Magic"], "choose one of MinMax, Entropy, Percentile"),
    (["target=onnx", "precision=bf16"], "unknown precision 'bf16'"),
    (["target=tensorflow"], "unknown target 'tensorflow'"),
    (["target=onnx", "precision=int8", "calib_data=/nonexistent/folder"], "calib_data=/nonexistent/folder: no such folder"),
])
def test_bad_target_input_is_one_line_and_exit_2(tmp_path, args, needle):
    proc = _convert(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2
    assert not any(tmp_path.iterdir())  # nothing written


def test_a_target_that_disagrees_with_the_canonical_onnx_fails_its_gate(tmp_path):
    """The gate itself: an artifact whose outputs drift is a failure, whatever its kit checks say."""
    from zoo.build.target_checks import check_target as _check_target
    from zoo.converters.stages import StageMeter
    from zoo.targets.base import Built, Check, Target

    class Drifting(Target):  # a stand-in target whose runtime output is off by a constant
        name = "drifting"

        def prepare(self, job):
            return job.onnx_path

        def compile(self, job, prepared):
            return Built(files=[], primary=prepared, compiled=True, compiler="none", checks=[Check("kit", True)])

        def load(self, job, built):
            return lambda x: canonical["images"] + 0.5

    class Job:
        precision = "fp32"
        weights = SimpleNamespace(output=SimpleNamespace(value="logits"))

    rng = np.random.default_rng(0)
    canonical = {"images": rng.standard_normal((3, 1000)).astype(np.float32)}
    refs = {"images": (np.zeros((3, 3, 8, 8), np.float32), canonical["images"])}
    result = _check_target(Drifting(), Job(), Drifting().compile(None, tmp_path / "m.onnx"), refs, canonical, StageMeter())
    assert result["passed"] is False
    assert result["parity"]["sets"]["images"]["cosine"] < 0.99999


def test_int8_is_gated_on_images_and_reports_noise():
    from zoo.validators.numerics import gated, set_passes

    assert gated("int8", "images") and not gated("int8", "random")
    assert gated("fp32", "random") and gated("fp16", "random")
    assert set_passes("int8", "random", {"passed": False}) and not set_passes("int8", "images", {"passed": False})


def test_int8_calibrates_on_a_set_built_by_zoo_calib(tmp_path):
    from zoo.validators.inputs import generated_images

    images = tmp_path / "train"
    for c, img in enumerate(generated_images(6, seed=5)):
        (images / f"n{c % 3:08d}").mkdir(parents=True, exist_ok=True)
        img.save(images / f"n{c % 3:08d}" / f"{c}.JPEG")
    calib = run_zoo("calib", f"model={MODEL}", "target=onnx", f"data={images}", "n=6", f"out_dir={tmp_path}")
    assert calib.returncode == 0, calib.stderr
    proc = _convert(tmp_path / "art", "target=onnx", "precision=int8", f"calib_data={tmp_path / 'calib' / 'onnx'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = manifest_of(tmp_path / "art", MODEL, "torchvision", TAG, "onnx-int8")["artifact"]["info"]
    assert info["calibration_images"] == 6  # the set's files, not the default 32 generated images


def test_int8_compares_probabilities_as_logits():
    """Softmax amplifies int8 error between near-tied classes; the gate looks at the logits it encodes."""
    from zoo.validators.numerics import compare

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 1000)) * 3
    logits[:, :2] = 12.0  # two near-tied leading classes, as a random-weight network gives
    noisy = logits + rng.normal(0, 0.1, logits.shape)
    probs = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)  # noqa: E731
    on_probs = compare(probs(logits), probs(noisy), "fp16", "probs")  # fp16 compares probabilities as they are
    as_logits = compare(probs(logits), probs(noisy), "int8", "probs")
    assert on_probs.domain == "output" and as_logits.domain == "centred log-probabilities"
    assert as_logits.cosine > 0.99 and as_logits.passed and as_logits.cosine > on_probs.cosine
    assert abs(as_logits.cosine - compare(logits - logits.mean(1, keepdims=True), noisy - noisy.mean(1, keepdims=True), "int8").cosine) < 1e-9
