"""The tensorrt target: its kit (no GPU here), its builder script against a FAKE TensorRT 10, and its
refusal of ixRT. TensorRT and an NVIDIA GPU are not on this machine; the FAKE packages (tests/fake_sdks.py)
stand in for the SDK and say so, and no test pretends an engine ran."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fake_sdks import FakeCudart, fake_package
from zoo.errors import UserError
from zoo.targets import tensorrt as trt_target
from zoo.targets import trt_engine
from zoo.targets.base import TargetJob
from zoo.targets.tensorrt import TensorrtTarget

VARIANT, BATCH, CALIB = "resnext50_32x4d", 4, 8
YAML = Path(trt_target.__file__).parents[1] / "conf" / "target" / "tensorrt.yaml"


def _options(**quant) -> dict:
    opts = yaml.safe_load(YAML.read_text())
    opts["batch"] = BATCH
    opts["quant"].update({"calib_images": CALIB, **quant})
    return opts


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """torchvision resnext50_32x4d with fresh weights, exported as the target asks (opset 17, dynamic batch)."""
    from zoo.converters import onnx_canonical
    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, VARIANT)
    w = select_weights(reg, v, "torchvision", None)
    adapter = get_adapter("torchvision")
    spec = TensorrtTarget().onnx_spec(_options(), "fp16")
    root = tmp_path_factory.mktemp("canonical")
    adapter.export_onnx(adapter.fresh(v, w, 0), root / "raw.onnx", spec, 224)
    onnx_canonical.finish(root / "raw.onnx", root / "model.onnx", spec, 224, {})
    return {"variant": v, "weights": w, "input": effective_input(v, w), "spec": spec, "onnx": root / "model.onnx"}


def _build(source, root: Path, precision: str):
    from zoo.calibration import CalibrationSet

    stage = root / "stage"
    (stage / ".work").mkdir(parents=True)
    job = TargetJob(variant=source["variant"], weights=source["weights"], input=source["input"], precision=precision,
                    options=_options(), onnx_path=source["onnx"], spec=source["spec"], stage=stage,
                    work=stage / ".work", calibration=CalibrationSet(None, 0))
    target = TensorrtTarget()
    target.check_options(job.options, precision)
    return target, job, target.compile(job, target.prepare(job))


@pytest.fixture(scope="module")
def int8(source, tmp_path_factory):
    return _build(source, tmp_path_factory.mktemp("int8"), "int8")


def test_without_tensorrt_the_int8_kit_is_complete_and_says_nothing_ran(int8):
    target, job, built = int8
    kit = job.stage
    assert sorted(p.name for p in built.files) == sorted(
        ["KIT.md", "build_engine.py", f"{VARIANT}_{BATCH}.onnx", f"{VARIANT}_int8_qdq_{BATCH}.onnx"])
    assert built.compiled is False and built.compiler == "tensorrt (not installed)" and not list(kit.glob("*.engine"))
    assert [c.name for c in built.checks if not c.passed] == []
    assert (kit / "build_engine.py").read_bytes() == Path(trt_engine.__file__).read_bytes()
    engine = f"{VARIANT}_int8_bs{BATCH}.engine"
    assert built.commands == [
        f"python3 build_engine.py --onnx {VARIANT}_int8_qdq_{BATCH}.onnx --engine {engine} --precision int8 "
        "--workspace-gib 4",
        f"trtexec --onnx={VARIANT}_int8_qdq_{BATCH}.onnx --saveEngine={engine} --int8 --fp16 "
        "--memPoolSize=workspace:4096M"]
    text = (kit / "KIT.md").read_text()
    assert all(c in text for c in built.commands) and "TensorRT did not run here: no engine was built" in text
    q = built.info["quantization"]
    assert (q["calib_images_used"], q["calib_batches"]) == (CALIB, CALIB // BATCH)
    # TensorRT takes symmetric int8 only: every zero point in the QDQ model is 0, read from the file itself
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(kit / f"{VARIANT}_int8_qdq_{BATCH}.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    zero_points = [inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert len(zero_points) > 50 and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert target.load(job, built) is None
    assert "the compiler was not run" in "\n".join(target.describe(job, built))


def test_options_are_refused_in_one_line():
    t = TensorrtTarget()
    for options, precision, part in ((_options(), "fp32", "fp16 or int8"),
                                     (_options(calib_images=BATCH - 1), "int8", f"at least {BATCH}"),
                                     (_options(method="Histogram"), "int8", "MinMax")):
        with pytest.raises(UserError, match=part) as e:
            t.check_options(options, precision)
        assert "\n" not in str(e.value)


def _script(kit: Path, fake_root: Path, log: Path, *args: str, version: str = "10.3.0") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(fake_root), "FAKE_TRT_LOG": str(log), "FAKE_TRT_VERSION": version}
    return subprocess.run([sys.executable, "build_engine.py", *args], cwd=kit, env=env, capture_output=True,
                          text=True, timeout=120)


def test_kit_script_builds_with_tensorrt_10_and_refuses_ixrt_and_other_versions(int8, tmp_path):
    _, job, built = int8
    kit = tmp_path / "kit"
    shutil.copytree(job.stage, kit)
    args = built.commands[0].split()[2:]
    nvidia = fake_package(tmp_path / "nvidia", with_ixrt=False)
    log = tmp_path / "calls.log"
    proc = _script(kit, nvidia, log, *args)
    assert proc.returncode == 0, proc.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0] == {"event": "create_network", "flags": 0}  # TensorRT 10: explicit batch is the only mode
    assert calls[1]["path"] == str((kit / f"{VARIANT}_int8_qdq_{BATCH}.onnx").resolve())
    assert calls[-1] == {"event": "build_serialized_network", "inputs": [["input", [BATCH, 3, 224, 224]]],
                         "flags": ["INT8", "FP16"]}
    engine = kit / f"{VARIANT}_int8_bs{BATCH}.engine"
    assert engine.read_bytes() == b'FAKE-ENGINE ["INT8", "FP16"]'
    engine.unlink()
    ixrt_sdk = fake_package(tmp_path / "ixrt", with_ixrt=True)
    refused = _script(kit, ixrt_sdk, log, *args)
    assert refused.returncode == 1 and "Iluvatar ixRT's" in refused.stderr and "target=ixrt" in refused.stderr
    old = _script(kit, nvidia, log, *args, version="8.6.1")
    assert old.returncode == 1 and "written for TensorRT 10.x" in old.stderr
    assert not list(kit.glob("*.engine"))


def test_with_a_gpu_compile_builds_in_a_child_and_the_run_check_needs_the_real_runtime(source, tmp_path, monkeypatch):
    nvidia = fake_package(tmp_path / "nvidia", with_ixrt=False)
    monkeypatch.syspath_prepend(str(nvidia))
    monkeypatch.setenv("PYTHONPATH", str(nvidia))
    monkeypatch.setenv("FAKE_TRT_VERSION", "10.3.0")
    monkeypatch.setenv("FAKE_TRT_LOG", str(tmp_path / "calls.log"))
    monkeypatch.setattr(trt_target, "gpu_present", lambda: True)
    target, job, built = _build(source, tmp_path / "b", "fp16")
    engine = job.stage / f"{VARIANT}_fp16_bs{BATCH}.engine"
    assert built.compiled and built.primary == engine and engine.read_bytes() == b'FAKE-ENGINE ["FP16"]'
    assert built.compiler == "tensorrt (found, NVIDIA GPU present)"
    checks = {c.name: c for c in built.checks}
    assert checks["engine built"].passed
    assert not checks["engine runs one batch"].passed  # the FAKE builds, but runs nothing
    assert "The engine was built and run here" in (job.stage / "KIT.md").read_text()


class FakeTrt10:
    """FAKE TensorRT 10 runtime: named I/O tensors, float32 (2, 3, 2, 2) in, float32 (2, 5) out = 3x the first five."""

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class TensorIOMode:
        INPUT, OUTPUT = "in", "out"

    def __init__(self, cudart):
        self.cudart = cudart

    @staticmethod
    def nptype(dtype):
        return dtype

    def Runtime(self, logger):
        trt = self

        class _Engine:
            num_io_tensors = 2
            io = {"input": ((2, 3, 2, 2), "in"), "output": ((2, 5), "out")}

            def get_tensor_name(self, i):
                return ["input", "output"][i]

            def get_tensor_shape(self, name):
                return self.io[name][0]

            def get_tensor_dtype(self, name):
                return np.float32

            def get_tensor_mode(self, name):
                return self.io[name][1]

            def create_execution_context(self):
                class _Context:
                    address = {}

                    def set_tensor_address(self, name, ptr):
                        self.address[name] = ptr

                    def execute_async_v3(self, stream):
                        mem = trt.cudart.memory
                        x = mem[self.address["input"]].view(np.float32).reshape(2, -1)
                        mem[self.address["output"]][:] = (3 * x[:, :5]).astype(np.float32).view(np.uint8).reshape(-1)
                        return True

                return _Context()

        class _Runtime:
            def deserialize_cuda_engine(self, data):
                return _Engine()

        return _Runtime()


def test_engine_runner_uses_named_tensors_and_a_stream(tmp_path):
    engine = tmp_path / "e.engine"
    engine.write_bytes(b"FAKE-ENGINE")
    cudart = FakeCudart()
    runner = trt_engine.EngineRunner(engine, trt=FakeTrt10(cudart), cudart=cudart)
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    assert runner.batch == 2 and np.array_equal(runner(x), 3 * x.reshape(2, -1)[:, :5])
    runner.close()
    assert sorted(cudart.freed) == sorted(cudart.memory) and cudart.destroyed_stream >= 0x5000
