"""Build (and optionally check) an Iluvatar ixRT engine from a static-batch ONNX model.

This file is imported by the ixRT target and copied verbatim into every ixRT kit as
``build_engine.py``, so it depends on nothing from the zoo: only the ixRT SDK (its ``ixrt`` module
and the TensorRT-8-compatible ``tensorrt`` module it installs), plus numpy, onnxruntime and
cuda-python for ``--check`` (as the vendor's inference.py: Iluvatar stacks often have no CUDA torch).
NVIDIA's TensorRT is refused: its engines are a different artifact.

    python build_engine.py --onnx m_32.onnx --engine m_float16_bs32.engine --precision fp16
    python build_engine.py --onnx m_32.onnx --engine m_float16_bs32.engine --check
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


class BuildError(RuntimeError):
    """The engine could not be built; the message says why in one line."""


def import_builder() -> Any:
    """ixRT's TensorRT-compatible ``tensorrt`` module; only where the ``ixrt`` module says it is ixRT's."""
    has_ixrt = importlib.util.find_spec("ixrt") is not None
    has_trt = importlib.util.find_spec("tensorrt") is not None
    if has_ixrt and has_trt:
        importlib.import_module("ixrt")
        return importlib.import_module("tensorrt")
    if has_trt:
        raise BuildError("the 'tensorrt' module here is NVIDIA's TensorRT, not ixRT's (no 'ixrt' module): an ixRT "
                         "kit builds Iluvatar engines only; run it where the Iluvatar CoreX SDK is installed")
    raise BuildError("the ixRT SDK is not installed (no 'ixrt' and 'tensorrt' modules): install the Iluvatar "
                     "CoreX SDK on the machine with the Iluvatar device")


def network_flags(trt: Any) -> int:
    """ixRT mirrors the TensorRT 8 API: an explicit-batch network, as the vendor's own builder asks for."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def precision_flags(trt: Any, precision: str) -> List[Any]:
    """FP16 for fp16; INT8 plus FP16 for a QDQ model, so layers left unquantised run in half precision."""
    if precision not in PRECISIONS:
        raise BuildError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    names = ["FP16"] if precision == "fp16" else ["INT8", "FP16"]
    missing = [n for n in names if not hasattr(trt.BuilderFlag, n)]
    if missing:
        raise BuildError(f"{trt.__name__} {getattr(trt, '__version__', '?')} has no BuilderFlag.{missing[0]}: "
                         "this is not the ixRT builder API (TensorRT 8 style) the kit was written for")
    return [getattr(trt.BuilderFlag, n) for n in names]


def set_workspace(trt: Any, config: Any, workspace_gib: float) -> None:
    """The builder's scratch memory; TensorRT >= 8.4 names it a memory pool, older builds a size."""
    size = int(workspace_gib * (1 << 30))
    if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size)
    else:
        config.max_workspace_size = size


def parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise BuildError(f"the ONNX parser rejected {onnx_path}: " + ("; ".join(errors) or "no error reported"))


def check_static_inputs(network: Any) -> None:
    """The kit builds one static-batch engine: a dynamic input means the wrong ONNX was given."""
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if any(int(d) < 0 for d in dims):
            raise BuildError(f"input '{tensor.name}' has a dynamic shape {dims}: build from the "
                             "static-batch ONNX (<model>_<batch>.onnx or the int8 QDQ model)")


def build_engine(onnx_path: Path, engine_path: Path, precision: str, workspace_gib: float = 4.0,
                 trt: Optional[Any] = None) -> Path:
    """Parse ``onnx_path``, build with the precision's flags, write the serialised engine."""
    trt = trt or import_builder()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise BuildError(f"{onnx_path}: no such ONNX file")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parse_onnx(trt, network, logger, onnx_path)
    check_static_inputs(network)
    config = builder.create_builder_config()
    for flag in precision_flags(trt, precision):
        config.set_flag(flag)
    set_workspace(trt, config, workspace_gib)
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
    raise BuildError("running an engine needs cuda-python (pip install cuda-python) and an Iluvatar device")


def _checked(result: Any, what: str) -> Any:
    """cuda-python returns (error, value...) tuples; anything but success is a BuildError."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BuildError(f"{what} failed: {err}")
    return rest[0] if rest else None


class EngineRunner:
    """Runs a static-batch engine on the device with cuda-python buffers: NCHW float32 in, output out."""

    def __init__(self, engine_path: Path, trt: Optional[Any] = None, cudart: Optional[Any] = None) -> None:
        self.trt, self.cudart = trt or import_builder(), cudart or import_cudart()
        logger = self.trt.Logger(self.trt.Logger.WARNING)
        self.engine = self.trt.Runtime(logger).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise BuildError(f"{engine_path}: the runtime could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        self.io = self._io_table()
        for t in self.io:
            t["device"] = _checked(self.cudart.cudaMalloc(t["nbytes"]), f"cudaMalloc({t['nbytes']})")

    def _io_table(self) -> List[dict]:
        """ixRT (like TensorRT 8) addresses I/O by binding index, in binding order."""
        import numpy as np

        trt, e = self.trt, self.engine
        table = []
        for i in range(e.num_bindings):
            shape, dtype = tuple(int(d) for d in e.get_binding_shape(i)), np.dtype(trt.nptype(e.get_binding_dtype(i)))
            table.append({"name": e.get_binding_name(i), "input": bool(e.binding_is_input(i)), "shape": shape,
                          "dtype": dtype, "nbytes": int(np.prod(shape)) * dtype.itemsize})
        return table

    @property
    def batch(self) -> int:
        return int(next(t for t in self.io if t["input"])["shape"][0])

    def __call__(self, x: Any) -> Any:
        import numpy as np

        cudart = self.cudart
        inp = next(t for t in self.io if t["input"])
        if tuple(x.shape) != inp["shape"]:
            raise ValueError(f"engine input '{inp['name']}' is {inp['shape']}, got {tuple(x.shape)}")
        host = np.ascontiguousarray(x, dtype=inp["dtype"])
        _checked(cudart.cudaMemcpy(inp["device"], host.ctypes.data, inp["nbytes"],
                                   cudart.cudaMemcpyKind.cudaMemcpyHostToDevice), "cudaMemcpy to the device")
        if self.context.execute_v2([t["device"] for t in self.io]) is False:
            raise BuildError("the engine's execution context reported a failed run")
        out = next(t for t in self.io if not t["input"])
        result = np.empty(out["shape"], dtype=out["dtype"])
        _checked(cudart.cudaMemcpy(result.ctypes.data, out["device"], out["nbytes"],
                                   cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost), "cudaMemcpy to the host")
        return result.astype(np.float32)

    def close(self) -> None:
        for t in self.io:
            if t.get("device") is not None:
                self.cudart.cudaFree(t.pop("device"))


def check_engine(onnx_path: Path, engine_path: Path, seed: int = 0) -> dict:
    """One seeded batch through the engine and through ONNX Runtime: max |difference| and cosine."""
    import numpy as np
    import onnxruntime as ort

    runner = EngineRunner(engine_path)
    inp = next(t for t in runner.io if t["input"])
    x = np.random.default_rng(seed).standard_normal(inp["shape"]).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    try:
        got = runner(x)
    finally:
        runner.close()
    a, b = ref.reshape(len(ref), -1).astype(np.float64), got.reshape(len(got), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {"max_abs": float(np.abs(a - b).max()), "min_cosine": float(cos.min()), "batch": int(len(x))}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Build an Iluvatar ixRT engine from a static-batch ONNX model.")
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
