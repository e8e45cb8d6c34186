"""Build, check and time an NVIDIA TensorRT engine from a static-batch ONNX model.

Imported by the tensorrt target and copied verbatim into every tensorrt kit as ``build_engine.py``,
so it depends on nothing from the zoo: NVIDIA TensorRT 10 (``pip install tensorrt-cu12``, or the
``tensorrt`` meta-package), cuda-python, numpy, and onnxruntime for ``--check``. Iluvatar's ixRT,
which installs a ``tensorrt`` module of its own, is refused: its engines are the ixrt target's.

    python build_engine.py --onnx m_8.onnx --engine m_fp16_bs8.engine --precision fp16
    python build_engine.py --onnx m_8.onnx --engine m_fp16_bs8.engine --check
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence

PRECISIONS = ("fp16", "int8")
SUPPORTED_MAJOR = 10  # the builder flags FP16 / INT8 (weak typing) are gone from TensorRT 11


class BuildError(RuntimeError):
    """The engine could not be built or run; the message says why in one line."""


def import_tensorrt() -> Any:
    """NVIDIA's ``tensorrt`` module, version 10; ixRT's look-alike is refused."""
    if importlib.util.find_spec("ixrt") is not None:
        raise BuildError("the 'tensorrt' module here is Iluvatar ixRT's: build ixRT engines with target=ixrt; "
                         "this kit is for NVIDIA TensorRT")
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError:
        raise BuildError("NVIDIA TensorRT is not installed: pip install 'tensorrt-cu12>=10,<11' cuda-python "
                         "(on a machine with an NVIDIA GPU)") from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major != SUPPORTED_MAJOR:
        raise BuildError(f"tensorrt {getattr(trt, '__version__', '?')}: this kit is written for TensorRT "
                         f"{SUPPORTED_MAJOR}.x (pip install 'tensorrt-cu12>={SUPPORTED_MAJOR},<{SUPPORTED_MAJOR + 1}')")
    return trt


def precision_flags(trt: Any, precision: str) -> List[Any]:
    """FP16 for fp16; INT8 plus FP16 for the QDQ model, so layers left unquantised run in half precision."""
    if precision not in PRECISIONS:
        raise BuildError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return [trt.BuilderFlag.FP16] if precision == "fp16" else [trt.BuilderFlag.INT8, trt.BuilderFlag.FP16]


def build_engine(onnx_path: Path, engine_path: Path, precision: str, workspace_gib: float = 4.0,
                 trt: Optional[Any] = None) -> Path:
    """Parse ``onnx_path`` into an explicit-batch network, build with the precision's flags, write the plan."""
    trt = trt or import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BuildError(f"{onnx_path}: no such ONNX file")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"the ONNX parser rejected {onnx_path}: " + ("; ".join(errors) or "no error reported"))
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if any(int(d) < 0 for d in tensor.shape):
            raise BuildError(f"input '{tensor.name}' has a dynamic shape {list(tensor.shape)}: build from the "
                             "kit's static-batch ONNX (<model>_<batch>.onnx or the int8 QDQ model)")
    config = builder.create_builder_config()
    for flag in precision_flags(trt, precision):
        config.set_flag(flag)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError(f"build_serialized_network returned no engine for {onnx_path} ({precision}); "
                         "the builder log above says why")
    data = memoryview(plan).tobytes()
    if not data:
        raise BuildError(f"build_serialized_network returned an empty engine for {onnx_path}")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(data)
    return engine_path


def import_cudart() -> Any:
    """cuda-python's runtime module (its location moved in cuda-python 12.6)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise BuildError("running an engine needs cuda-python (pip install cuda-python) and an NVIDIA GPU")


def _checked(result: Any, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BuildError(f"{what} failed: {err}")
    return rest[0] if rest else None


class EngineRunner:
    """A static-batch engine on the GPU through TensorRT 10's named I/O tensors and a CUDA stream."""

    def __init__(self, engine_path: Path, trt: Optional[Any] = None, cudart: Optional[Any] = None) -> None:
        import numpy as np

        self.trt, self.cudart = trt or import_tensorrt(), cudart or import_cudart()
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BuildError(f"{engine_path}: the runtime could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.stream = _checked(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.io = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(int(d) for d in self.engine.get_tensor_shape(name))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            device = _checked(self.cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})")
            self.io.append({"name": name, "input": self.engine.get_tensor_mode(name) == self.trt.TensorIOMode.INPUT,
                            "shape": shape, "dtype": dtype, "nbytes": nbytes, "device": device})
            self.context.set_tensor_address(name, device)

    @property
    def batch(self) -> int:
        return int(next(t for t in self.io if t["input"])["shape"][0])

    def __call__(self, x: Any) -> Any:
        import numpy as np

        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        inp = next(t for t in self.io if t["input"])
        if tuple(x.shape) != inp["shape"]:
            raise ValueError(f"engine input '{inp['name']}' is {inp['shape']}, got {tuple(x.shape)}")
        host = np.ascontiguousarray(x, dtype=inp["dtype"])
        _checked(cudart.cudaMemcpyAsync(inp["device"], host.ctypes.data, inp["nbytes"], kind.cudaMemcpyHostToDevice,
                                        self.stream), "cudaMemcpyAsync to the GPU")
        if not self.context.execute_async_v3(self.stream):
            raise BuildError("the engine's execution context reported a failed run")
        out = next(t for t in self.io if not t["input"])
        result = np.empty(out["shape"], dtype=out["dtype"])
        _checked(cudart.cudaMemcpyAsync(result.ctypes.data, out["device"], out["nbytes"], kind.cudaMemcpyDeviceToHost,
                                        self.stream), "cudaMemcpyAsync to the host")
        _checked(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return result.astype(np.float32)

    def close(self) -> None:
        for t in self.io:
            if t.get("device") is not None:
                self.cudart.cudaFree(t.pop("device"))
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None


def check_engine(onnx_path: Path, engine_path: Path, seed: int = 0) -> dict:
    """One seeded batch through the engine and through ONNX Runtime: max |difference| and cosine."""
    import numpy as np
    import onnxruntime as ort

    runner = EngineRunner(engine_path)
    try:
        inp = next(t for t in runner.io if t["input"])
        x = np.random.default_rng(seed).standard_normal(inp["shape"]).astype(np.float32)
        sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        got = runner(x)
    finally:
        runner.close()
    a, b = ref.reshape(len(ref), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {"max_abs": float(np.abs(a - b).max()), "min_cosine": float(cos.min()), "batch": int(len(x))}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build an NVIDIA TensorRT 10 engine from a static-batch ONNX model.")
    p.add_argument("--onnx", required=True, type=Path, help="the static-batch ONNX (or the int8 QDQ model)")
    p.add_argument("--engine", required=True, type=Path, help="where to write the serialised engine")
    p.add_argument("--precision", choices=PRECISIONS, default="fp16")
    p.add_argument("--workspace-gib", type=float, default=4.0, help="builder memory pool, GiB")
    p.add_argument("--check", action="store_true",
                   help="do not build: run one batch through --engine and compare with ONNX Runtime on --onnx")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.check:
            print(json.dumps(check_engine(args.onnx, args.engine), sort_keys=True))
            return 0
        path = build_engine(args.onnx, args.engine, args.precision, args.workspace_gib)
    except BuildError as e:
        print(f"build_engine: error: {e}", file=sys.stderr)
        return 1
    print(f"build_engine: wrote {path} ({path.stat().st_size} bytes, {args.precision})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
