"""The ixRT target: the kit's ONNX files, CONFIG and int8 model are checked for real with ONNX Runtime and
bash; the engine builder runs against a FAKE ``tensorrt`` package (ixRT and TensorRT need a device).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from fake_sdks import FakeCudart, fake_package
from zoo.errors import UserError
from zoo.targets import ixrt, ixrt_engine
from zoo.targets.base import TargetJob, run_static
from zoo.targets.ixrt import IxrtTarget
from zoo.targets.ixrt import IxrtOptions

BATCH = 4
CALIB = 8
VARIANT = "resnext50_32x4d"
YAML = Path(ixrt.__file__).parents[1] / "conf" / "target" / "ixrt.yaml"


def _dims(value) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value.type.tensor_type.shape.dim]


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _options(**quant) -> dict:
    opts = yaml.safe_load(YAML.read_text())
    opts["batch"] = BATCH
    opts["quant"].update({"calib_images": CALIB, **quant})
    return opts


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """torchvision resnext50_32x4d with fresh weights, as the pipeline hands it over: opset 13, dynamic batch."""
    from zoo.converters import onnx_canonical
    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, VARIANT)
    w = select_weights(reg, v, "torchvision", None)
    adapter = get_adapter("torchvision")
    model = adapter.fresh(v, w, 0)
    spec = IxrtTarget().onnx_spec(_options(), "fp16")
    assert (spec.opset, spec.input_name, spec.dynamic_batch) == (13, "input", True)
    root = tmp_path_factory.mktemp("canonical")
    adapter.export_onnx(model, root / "raw.onnx", spec, 224)
    onnx_canonical.finish(root / "raw.onnx", root / "model.onnx", spec, 224, {})
    return {"variant": v, "weights": w, "input": effective_input(v, w), "spec": spec, "onnx": root / "model.onnx"}


def _job(source, root: Path, precision: str, options: dict) -> TargetJob:
    from zoo.calibration import CalibrationSet

    stage = root / "stage"
    (stage / ".work").mkdir(parents=True)  # scratch inside the stage, as the pipeline lays it out
    (stage / ".work" / "scratch.onnx").write_bytes(b"not part of the kit")
    return TargetJob(variant=source["variant"], weights=source["weights"], input=source["input"],
                     precision=precision, options=options, onnx_path=source["onnx"], spec=source["spec"],
                     stage=stage, work=stage / ".work", calibration=CalibrationSet(None, 0))


def _build(source, root: Path, precision: str):
    target, job = IxrtTarget(), _job(source, root, precision, _options())
    target.check_options(job.options, precision)
    built = target.compile(job, target.prepare(job))
    return target, job, built


@pytest.fixture(scope="module")
def fp16(source, tmp_path_factory):
    return _build(source, tmp_path_factory.mktemp("fp16"), "fp16")


@pytest.fixture(scope="module")
def int8(source, tmp_path_factory):
    return _build(source, tmp_path_factory.mktemp("int8"), "int8")


# --- the kit ---------------------------------------------------------------------------------------


def test_fp16_kit_holds_the_vendor_files_and_no_engine(fp16):
    target, job, built = fp16
    kit = job.stage
    names = sorted(p.name for p in built.files)
    assert names == sorted(["KIT.md", "RESNEXT50_32X4D_CONFIG", "build_engine.py",
                            f"{VARIANT}_{BATCH}.onnx", f"{VARIANT}_sim.onnx", "inference.py", "preprocess.json",
                            f"infer_{VARIANT}_fp16_accuracy.sh", f"infer_{VARIANT}_fp16_performance.sh"])
    assert all(p.parent == kit and p.stat().st_size > 0 for p in built.files)
    assert not list(kit.glob("*.engine"))
    assert built.compiled is False and "not installed" in built.compiler
    assert built.primary == kit / f"{VARIANT}_{BATCH}.onnx"
    assert [c for c in built.checks if not c.passed] == []
    assert (kit / "build_engine.py").read_bytes() == Path(ixrt_engine.__file__).read_bytes()
    engine = f"{VARIANT}_float16_bs{BATCH}.engine"
    assert built.commands == [
        f"python3 build_engine.py --onnx {VARIANT}_{BATCH}.onnx --engine {engine} --precision fp16 --workspace-gib 4",
        f"ixrtexec --onnx {VARIANT}_{BATCH}.onnx --save_engine {engine} --precision fp16",
    ]
    assert all(c in (kit / "KIT.md").read_text() for c in built.commands)
    summary = "\n".join(target.describe(job, built))
    assert "not installed" in summary and built.commands[0] in summary
    assert target.load(job, built) is None


def test_sim_is_the_canonical_and_the_static_copy_matches_it(fp16, source):
    _, job, _ = fp16
    sim, static = job.stage / f"{VARIANT}_sim.onnx", job.stage / f"{VARIANT}_{BATCH}.onnx"
    assert sim.read_bytes() == source["onnx"].read_bytes()
    m = onnx.load(str(static))
    assert [i.name for i in m.graph.input] == ["input"]
    assert _dims(m.graph.input[0]) == [BATCH, 3, 224, 224]
    assert _dims(m.graph.output[0]) == [BATCH, 1000]
    assert _dims(onnx.load(str(sim)).graph.input[0])[0] == "batch"
    assert next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 13
    x = np.random.default_rng(7).standard_normal((BATCH, 3, 224, 224)).astype(np.float32)
    want, got = _run(sim, x), _run(static, x)
    assert got.shape == (BATCH, 1000)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception):  # truly static: another batch is refused
        _run(static, x[:1])


def _source_config(path: Path, kit: Path) -> dict:
    keys = list(ixrt.CONFIG_KEYS)
    script = "set -u; source \"$1\"; " + "; ".join(f'echo "{k}=${{{k}[*]}}"' for k in keys)
    out = subprocess.run(["bash", "-c", script, "x", str(path)], capture_output=True, text=True, check=True,
                         env={**os.environ, "CHECKPOINTS_DIR": str(kit)}).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def test_config_has_the_vendor_keys_and_the_job_values(fp16, int8):
    for _, job, _ in (fp16, int8):
        path = job.stage / "RESNEXT50_32X4D_CONFIG"
        assigned = [line.split("=")[0] for line in path.read_text().splitlines() if line and not line.startswith("#")]
        assert assigned == list(ixrt.CONFIG_KEYS)
        values = _source_config(path, job.stage)
        assert values == {
            "IMGSIZE": "224", "MODEL_NAME": VARIANT, "ORIGINE_MODEL": f"{VARIANT}_sim.onnx",
            # how the kit's QDQ model was calibrated, in the vendor quantiser's words (quant.py maps
            # --observer entropy to ONNX Runtime's Entropy): CALIB images in whole batches of BATCH
            "QUANT_OBSERVER": "entropy", "QUANT_BATCHSIZE": str(BATCH), "QUANT_STEP": str(CALIB // BATCH),
            "QUANT_SEED": "42",
            "DISABLE_QUANT_LIST": "",
            "QUANT_EXIST_ONNX": f"{job.stage}/{VARIANT}_int8_qdq.onnx" if job.precision == "int8" else "",
        }
        if job.precision == "int8":
            assert Path(values["QUANT_EXIST_ONNX"]).is_file()


def test_config_check_catches_a_wrong_value_a_missing_key_and_bad_bash(fp16, tmp_path):
    _, job, _ = fp16
    names = ixrt.kit_names(job)
    expected = ixrt.config_values(job, names)
    good = (job.stage / names.config).read_text()
    path = tmp_path / "CONFIG"
    path.write_text(good)
    assert all(c.passed for c in ixrt.config_checks(path, job.stage, expected))
    path.write_text(good.replace("IMGSIZE=224", "IMGSIZE=256"))
    bad = [c for c in ixrt.config_checks(path, job.stage, expected) if not c.passed]
    assert len(bad) == 1 and "IMGSIZE='256'" in bad[0].detail
    path.write_text(good.replace("QUANT_SEED=42\n", ""))
    failed = {c.name for c in ixrt.config_checks(path, job.stage, expected) if not c.passed}
    assert failed == {"CONFIG has the vendor's key set", "CONFIG parses with bash, values as configured"}
    path.write_text(good + "UNUSED=$NOT_SET_ANYWHERE\n")  # set -u: an unbound variable fails to source
    checks = ixrt.config_checks(path, job.stage, expected)
    assert any(not c.passed and "unbound" in c.detail for c in checks)


def test_disable_quant_list_is_a_bash_array():
    text = ixrt.render_config({**{k: "" for k in ixrt.CONFIG_KEYS}, "DISABLE_QUANT_LIST": ["/fc/Gemm", "a b"]})
    script = 'source /dev/stdin; printf "%s|" "${DISABLE_QUANT_LIST[@]}"'
    out = subprocess.run(["bash", "-c", script], input=text, capture_output=True, text=True, check=True).stdout
    assert out == "/fc/Gemm|a b|"


def test_int8_kit_is_a_calibrated_qdq_model_close_to_fp32(int8):
    from zoo.calibration import calibration_images
    from zoo.preprocess import preprocess
    from zoo.targets.quantize import count_qdq

    _, job, built = int8
    kit = job.stage
    qdq, static = kit / f"{VARIANT}_int8_qdq.onnx", kit / f"{VARIANT}_{BATCH}.onnx"
    assert qdq in built.files and [c for c in built.checks if not c.passed] == []
    assert built.compiled is False
    assert built.commands[0] == (f"python3 build_engine.py --onnx {qdq.name} --engine {VARIANT}_int8_bs{BATCH}.engine "
                                 f"--precision int8 --workspace-gib 4")
    counts = count_qdq(qdq)
    model = onnx.load(str(qdq))
    convs = sum(n.op_type in ("Conv", "Gemm") for n in model.graph.node)
    assert convs == 54 and counts["QuantizeLinear"] >= convs and counts["DequantizeLinear"] >= 2 * convs
    assert _dims(model.graph.input[0]) == [BATCH, 3, 224, 224]
    # per-channel weights (one scale per output channel) and float biases
    inits = {t.name: t for t in model.graph.initializer}
    first_conv = next(n for n in model.graph.node if n.op_type == "Conv")
    w_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == first_conv.input[1])
    assert onnx.numpy_helper.to_array(inits[w_dq.input[1]]).shape == (64,)
    assert first_conv.input[2] in inits and inits[first_conv.input[2]].data_type == onnx.TensorProto.FLOAT
    q = built.info["quantization"]
    assert (q["calibrate_method"], q["calibration_images"], q["bias_quantized"]) == ("Entropy", CALIB, False)
    # generated calibration: the README says so, and how to rebuild on real images
    readme = (kit / "KIT.md").read_text()
    assert "## Calibration" in readme and "GENERATED images" in readme and "int8 accuracy of this kit is unknown" in readme
    assert "target=ixrt precision=int8 calib_data=DIR" in readme
    x = np.stack([preprocess(im, job.input) for im in calibration_images(BATCH, 0)])
    a, b = _run(static, x).astype(np.float64), _run(qdq, x).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.99 and not np.array_equal(a, b)
    assert built.info["int8_min_cosine"] >= 0.99


def test_check_options_rejects_bad_values_in_one_line():
    t = IxrtTarget()
    t.check_options(_options(), "int8")
    cases = [(_options(method="Histogram"), "int8", "MinMax|Entropy|Percentile"),
             (_options(calib_images=BATCH - 1), "int8", f"calib_images={BATCH - 1}|whole batches|at least {BATCH}"),
             (_options(), "fp32", "fp16 or int8")]
    for options, precision, hint in cases:
        with pytest.raises(UserError) as e:
            t.check_options(options, precision)
        message = str(e.value)
        assert "\n" not in message
        assert all(part in message for part in hint.split("|")), message
    # types and ranges are the typed options' job, checked when the config is composed
    with pytest.raises(UserError, match=r"^target.batch=0: the batch must be a positive integer$"):
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(IxrtOptions),
                                            {k: v for k, v in _options().items() if k != "defaults"}, {"batch": 0}))


# --- the static-batch transform on graphs that carry a traced batch ---------------------------------


def _reshape_model(path: Path, first_dim: int, as_constant_node: bool) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([first_dim, 12], np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["output"], name="flatten")]
    inits = [shape]
    if as_constant_node:
        nodes.insert(0, helper.make_node("Constant", [], ["shape"], value=shape))
        inits = []
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 2, 2])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 12])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.mark.parametrize("as_constant_node", [False, True])
def test_a_traced_batch_of_1_in_a_reshape_is_patched(tmp_path, as_constant_node):
    dynamic = _reshape_model(tmp_path / "d.onnx", 1, as_constant_node)
    made = ixrt.make_static(dynamic, tmp_path / "s.onnx", BATCH, (1,))
    assert made["reshapes_patched"] == ["flatten"]
    x = np.arange(BATCH * 12, dtype=np.float32).reshape(BATCH, 3, 2, 2)
    np.testing.assert_array_equal(_run(tmp_path / "s.onnx", x), x.reshape(BATCH, 12))
    with pytest.raises(Exception):  # the dynamic model really carries the traced batch
        _run(dynamic, x)
    check, diff = ixrt.static_parity_check(dynamic, tmp_path / "s.onnx", BATCH, 2, seed=0)
    assert check.passed and diff == 0.0  # compared one image at a time where the dynamic model needs it


def test_minus_one_stays(tmp_path):
    dynamic = _reshape_model(tmp_path / "d.onnx", -1, False)
    made = ixrt.make_static(dynamic, tmp_path / "s.onnx", BATCH, (1,))
    assert made["reshapes_patched"] == []
    m = onnx.load(str(tmp_path / "s.onnx"))
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    reshape = next(n for n in m.graph.node if n.op_type == "Reshape")
    assert consts[reshape.input[1]].tolist() == [-1, 12]
    assert _dims(m.graph.input[0]) == [BATCH, 3, 2, 2] and _dims(m.graph.output[0]) == [BATCH, 12]


# --- val_map.txt -----------------------------------------------------------------------------------


def test_val_map_round_trip_and_refusals(tmp_path):
    out = ixrt.write_val_map([(tmp_path / "n01440764" / "ILSVRC2012_val_00000293.JPEG", 0),
                              ("n01443537/ILSVRC2012_val_00000236.JPEG", 1), (Path("x/last.png"), 999)],
                             tmp_path / "val_map.txt")
    assert out.read_text() == ("ILSVRC2012_val_00000293.JPEG\t0\nILSVRC2012_val_00000236.JPEG\t1\n"
                               "last.png\t999\n")
    assert ixrt.read_val_map(out) == {"ILSVRC2012_val_00000293.JPEG": 0, "ILSVRC2012_val_00000236.JPEG": 1,
                                      "last.png": 999}
    with pytest.raises(ValueError, match="two images are named a.jpg"):
        ixrt.write_val_map([("c1/a.jpg", 0), ("c2/a.jpg", 1)], tmp_path / "v.txt")
    with pytest.raises(ValueError, match="not a class index"):
        ixrt.write_val_map([("a.jpg", -1)], tmp_path / "v.txt")
    (tmp_path / "messy.txt").write_text("a.jpg\t3\n\nno_label\nb.jpg 4\n  c.jpg\t5  \n")
    assert ixrt.read_val_map(tmp_path / "messy.txt") == {"a.jpg": 3, "c.jpg": 5}


# --- the engine builder against a FAKE vendor SDK --------------------------------------------------

@pytest.fixture()
def fake_sdk(tmp_path, monkeypatch):
    """A FAKE ixRT SDK (tensorrt and ixrt packages) on PYTHONPATH; returns a reader of its call log."""
    root = fake_package(tmp_path / "fake_sdk", with_ixrt=True)
    log = tmp_path / "fake_trt.log"
    monkeypatch.setenv("FAKE_TRT_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    calls.root = root
    return calls


def _load_fake(fake_sdk):
    """A fresh copy of the FAKE module (it reads its version from the environment when loaded)."""
    spec = importlib.util.spec_from_file_location("fake_tensorrt", fake_sdk.root / "tensorrt" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("precision,flags", [("fp16", ["FP16"]), ("int8", ["INT8", "FP16"])])
def test_builder_sets_flags_parses_the_file_and_sets_the_pool(fp16, fake_sdk, tmp_path, precision, flags):
    _, job, _ = fp16
    onnx_path = job.stage / f"{VARIANT}_{BATCH}.onnx"
    engine = ixrt_engine.build_engine(onnx_path, tmp_path / "e.engine", precision, 2, trt=_load_fake(fake_sdk))
    calls = fake_sdk()
    assert [c["event"] for c in calls] == ["create_network", "parse_from_file", *["set_flag"] * len(flags),
                                           "set_memory_pool_limit", "build_serialized_network"]
    assert calls[0]["flags"] == 1  # TensorRT 8 API: 1 << EXPLICIT_BATCH
    assert calls[1]["path"] == str(onnx_path.resolve())
    assert [c["flag"] for c in calls if c["event"] == "set_flag"] == flags
    assert calls[-2] == {"event": "set_memory_pool_limit", "pool": "WORKSPACE", "size": 2 << 30}
    assert calls[-1]["inputs"] == [["input", [BATCH, 3, 224, 224]]]
    assert engine.read_bytes() == ("FAKE-ENGINE " + json.dumps(flags)).encode()


def test_builder_refuses_a_dynamic_model_and_missing_precision_flags(fp16, fake_sdk, tmp_path, monkeypatch):
    _, job, _ = fp16
    trt = _load_fake(fake_sdk)
    with pytest.raises(ixrt_engine.BuildError, match="dynamic shape"):
        ixrt_engine.build_engine(job.stage / f"{VARIANT}_sim.onnx", tmp_path / "e.engine", "fp16", trt=trt)
    monkeypatch.setenv("FAKE_TRT_NO_PRECISION_FLAGS", "1")
    with pytest.raises(ixrt_engine.BuildError, match="no BuilderFlag.FP16"):
        ixrt_engine.build_engine(job.stage / f"{VARIANT}_{BATCH}.onnx", tmp_path / "e.engine", "fp16",
                                 trt=_load_fake(fake_sdk))
    assert not (tmp_path / "e.engine").exists()


def _kit_script(kit: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "build_engine.py", *args], cwd=kit, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_kit_script_builds_the_int8_engine_with_ixrt(int8, fake_sdk, tmp_path):
    _, job, built = int8
    kit = tmp_path / "kit"
    shutil.copytree(job.stage, kit)
    engine = f"{VARIANT}_int8_bs{BATCH}.engine"
    args = built.commands[0].split()[2:]  # the kit's own command, after "python3 build_engine.py"
    proc = _kit_script(kit, *args)
    assert proc.returncode == 0, proc.stderr
    calls = fake_sdk()
    assert calls[0] == {"event": "create_network", "flags": 1}  # ixRT's TensorRT 8 API: 1 << EXPLICIT_BATCH
    assert calls[1]["path"] == str((kit / f"{VARIANT}_int8_qdq.onnx").resolve())
    assert calls[-1]["flags"] == ["INT8", "FP16"]
    assert (kit / engine).read_bytes() == b'FAKE-ENGINE ["INT8", "FP16"]'
    assert f"wrote {engine}" in proc.stdout


def test_kit_script_fails_loudly(fp16, fake_sdk, tmp_path):
    _, job, built = fp16
    kit = tmp_path / "kit"
    shutil.copytree(job.stage, kit)
    args = built.commands[0].split()[2:]
    none = _kit_script(kit, *args, FAKE_TRT_BUILD_FAILS="1")
    assert none.returncode != 0 and "build_serialized_network returned no engine" in none.stderr
    parse = _kit_script(kit, *args, FAKE_TRT_PARSE_ERROR="1")
    assert parse.returncode != 0 and "fake: In node 0 (Conv): unsupported attribute" in parse.stderr
    assert not list(kit.glob("*.engine"))
    if not any(importlib.util.find_spec(n) for n in ("tensorrt", "ixrt")):  # a machine without the SDK
        missing = _kit_script(kit, *args, PYTHONPATH="")
        assert missing.returncode != 0 and "the ixRT SDK is not installed" in missing.stderr
        # NVIDIA's TensorRT (a tensorrt module and no ixrt one) builds another artifact: refused, nothing written
        nvidia = fake_package(tmp_path / "nvidia_only", with_ixrt=False)
        refused = _kit_script(kit, *args, PYTHONPATH=str(nvidia))
        assert refused.returncode != 0 and "NVIDIA's TensorRT, not ixRT's" in refused.stderr
        assert not list(kit.glob("*.engine"))


def test_compile_builds_the_engine_where_the_sdk_and_a_device_are(source, fake_sdk, tmp_path, monkeypatch):
    """With the SDK importable and a device answering, compile runs the kit's script in a child process."""
    monkeypatch.syspath_prepend(str(fake_sdk.root))
    monkeypatch.setattr(ixrt, "device_present", lambda: True)
    target, job, built = _build(source, tmp_path / "b", "fp16")
    engine = job.stage / f"{VARIANT}_float16_bs{BATCH}.engine"
    assert built.compiled and built.primary == engine and engine in built.files
    assert engine.read_bytes() == b'FAKE-ENGINE ["FP16"]'
    assert built.compiler.startswith("ixrt (found")
    checks = {c.name: c for c in built.checks}
    assert checks["engine built"].passed
    # the fake builds but has no runtime (and no device is here): the run check fails, saying why
    detail = checks["engine runs one batch"].detail
    assert not checks["engine runs one batch"].passed and ("Runtime" in detail or "cuda" in detail.lower()), detail
    assert (job.stage / "build_logs" / "build_engine.log").is_file()


class FakeEngineTrt:
    """FAKE ixRT runtime API: an engine of two bindings, float32 (2, 3, 2, 2) in, float16 (2, 5) out,
    that outputs twice the first five values of each image."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    def __init__(self, cudart):
        self.cudart = cudart

    @staticmethod
    def nptype(dtype):
        return dtype

    def Runtime(self, logger):
        trt = self

        class _Engine:
            num_bindings = 2
            shapes = [(2, 3, 2, 2), (2, 5)]
            dtypes = [np.float32, np.float16]

            def get_binding_shape(self, i):
                return self.shapes[i]

            def get_binding_dtype(self, i):
                return self.dtypes[i]

            def get_binding_name(self, i):
                return ["input", "output"][i]

            def binding_is_input(self, i):
                return i == 0

            def create_execution_context(self):
                engine = self

                class _Context:
                    def execute_v2(self, bindings):
                        x = trt.cudart.memory[bindings[0]].view(np.float32).reshape(engine.shapes[0])
                        y = (2 * x.reshape(2, -1)[:, :5]).astype(np.float16)
                        trt.cudart.memory[bindings[1]][:] = y.view(np.uint8).reshape(-1)
                        return True

                return _Context()

        class _Runtime:
            def deserialize_cuda_engine(self, data):
                assert data == b"FAKE-ENGINE"
                return _Engine()

        return _Runtime()


def test_engine_runner_copies_in_runs_and_copies_back_with_cuda_python(tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"FAKE-ENGINE")
    cudart = FakeCudart()
    runner = ixrt_engine.EngineRunner(engine, trt=FakeEngineTrt(cudart), cudart=cudart)
    assert runner.batch == 2 and [t["nbytes"] for t in runner.io] == [2 * 3 * 2 * 2 * 4, 2 * 5 * 2]
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 2, 2)  # converted to the engine's float32 on the way in
    y = runner(x)
    assert y.dtype == np.float32 and np.array_equal(y, 2 * x.reshape(2, -1)[:, :5])
    with pytest.raises(ValueError, match=r"\(2, 3, 2, 2\)"):
        runner(np.zeros((1, 3, 2, 2), np.float32))
    runner.close()
    assert sorted(cudart.freed) == sorted(cudart.memory)


def _labelled_folder(root: Path, n: int) -> Path:
    """An ImageFolder-style set of ``n`` seeded images with the vendor's val_map.txt (name<TAB>label)."""
    from zoo.validators.inputs import generated_images

    lines = []
    for i, im in enumerate(generated_images(n, seed=7)):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        im.save(root / f"c{i % 2}" / f"img_{i}.JPEG", quality=95)
        lines.append(f"img_{i}.JPEG\t{(i * 37) % 1000}")
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("which", ["fp16", "int8"])
def test_device_scripts_run_end_to_end_with_the_onnx_stand_in(which, fp16, int8, tmp_path):
    """The kit's accuracy and performance scripts, as a device engineer runs them, with ONNX Runtime on the kit's
    static ONNX in place of the engine; top-1/top-5 recomputed here with the registry's own preprocessing."""
    from zoo.preprocess import preprocess

    _, job, built = {"fp16": fp16, "int8": int8}[which]
    kit = tmp_path / "kit"
    shutil.copytree(job.stage, kit)
    data = _labelled_folder(tmp_path / "val", 6)  # two static batches of 4, the second padded
    model = kit / (f"{VARIANT}_int8_qdq.onnx" if which == "int8" else f"{VARIANT}_{BATCH}.onnx")
    # the scripts call python3, as on the device: this interpreter's, with numpy, Pillow and ONNX Runtime
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "DATASETS_DIR": str(data), "ENGINE_FILE": str(model)}
    acc = subprocess.run(["bash", f"infer_{VARIANT}_{which}_accuracy.sh"], cwd=kit, env=env, capture_output=True,
                         text=True, timeout=300)
    assert acc.returncode == 0, acc.stderr[-2000:]
    got1, got5 = (tuple(int(v) for v in re.search(rf"Acc@{k} : [\d.]+ = (\d+)/(\d+)", acc.stdout).groups())
                  for k in (1, 5))
    # independently: the registry's preprocessing, ONNX Runtime, each image once
    items = [(data / f"c{i % 2}" / f"img_{i}.JPEG", (i * 37) % 1000) for i in range(6)]
    x = np.stack([preprocess(Image.open(p), job.input) for p, _ in items])
    scores = run_static(lambda c: _run(model, c), x, BATCH)
    order = np.argsort(-scores, axis=1, kind="stable")
    labels = np.array([lab for _, lab in items])
    assert got1 == (int((order[:, 0] == labels).sum()), 6)
    assert got5 == (int((order[:, :5] == labels[:, None]).any(axis=1).sum()), 6)
    assert "published: top-1 77.618" in acc.stdout and "ONNX Runtime" in acc.stdout  # the stand-in says so
    fps = subprocess.run(["bash", f"infer_{VARIANT}_{which}_performance.sh", "--warm_up", "1", "--loop_count", "2"],
                         cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert fps.returncode == 0, fps.stderr[-2000:]
    assert float(re.search(r"FPS : ([\d.]+)", fps.stdout).group(1)) > 0
    assert "published: 417.01 FPS at batch 32 fp16" in fps.stdout
    assert not list(kit.glob("*.engine"))  # the stand-in never builds an engine
    checks = {c.name: c.passed for c in built.checks}
    assert checks[f"infer_{VARIANT}_{which}_accuracy.sh parses (bash -n)"] and checks["inference.py compiles"]
