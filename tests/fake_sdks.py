"""FAKE vendor SDKs for the engine-builder tests: test stand-ins, never real engines.

``FAKE_TENSORRT`` is the source of a ``tensorrt`` package that records each builder call and refuses
what the real API refuses; ``fake_package`` writes it (with a FAKE ``ixrt`` module beside it, as the
ixRT SDK installs one, or without, as NVIDIA's TensorRT is); ``FakeCudart`` is cuda-python's runtime
with host buffers for device memory.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

FAKE_TENSORRT = '''
"""FAKE tensorrt: a test stand-in for the vendor SDK (ixRT's TensorRT-8-style module; NVIDIA's TensorRT 10
with FAKE_TRT_VERSION=10.x).

Records each builder call as a JSON line in $FAKE_TRT_LOG and refuses what the real API refuses: a
network flag of the wrong API generation, an ONNX file that does not exist. Never a real engine.
"""
import json
import os

import onnx

__version__ = os.environ.get("FAKE_TRT_VERSION", "8.6.1")
_MAJOR = int(__version__.split(".")[0])


def _log(event, **kw):
    with open(os.environ["FAKE_TRT_LOG"], "a") as f:
        f.write(json.dumps({"event": event, **kw}) + "\\n")


class Logger:
    WARNING = 2

    def __init__(self, level):
        self.level = level


class NetworkDefinitionCreationFlag:
    EXPLICIT_BATCH = 0


class BuilderFlag:
    TF32 = "TF32"


if not os.environ.get("FAKE_TRT_NO_PRECISION_FLAGS"):  # TensorRT 11 dropped them
    BuilderFlag.FP16, BuilderFlag.INT8 = "FP16", "INT8"


class MemoryPoolType:
    WORKSPACE = "WORKSPACE"


class _Tensor:
    def __init__(self, name, shape):
        self.name, self.shape = name, shape


class _Network:
    def __init__(self):
        self.inputs = []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, i):
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network, logger):
        assert isinstance(network, _Network) and isinstance(logger, Logger)
        self.network, self.errors = network, []

    def parse_from_file(self, path):
        _log("parse_from_file", path=os.path.abspath(path))
        if os.environ.get("FAKE_TRT_PARSE_ERROR"):
            self.errors = ["fake: In node 0 (Conv): unsupported attribute"]
            return False
        model = onnx.load(path, load_external_data=False)
        inits = {t.name for t in model.graph.initializer}
        for value in model.graph.input:
            if value.name not in inits:
                dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
                self.network.inputs.append(_Tensor(value.name, dims))
        return True

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]


class _Config:
    def __init__(self):
        self.flags = []

    def set_flag(self, flag):
        _log("set_flag", flag=flag)
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool, size):
        _log("set_memory_pool_limit", pool=pool, size=size)


class Builder:
    def __init__(self, logger):
        assert isinstance(logger, Logger)

    def create_network(self, flags):
        _log("create_network", flags=flags)
        want = 0 if _MAJOR >= 10 else 1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH
        if flags != want:
            raise TypeError(f"fake tensorrt {__version__}: create_network({flags}), the API wants {want}")
        return _Network()

    def create_builder_config(self):
        return _Config()

    def build_serialized_network(self, network, config):
        _log("build_serialized_network", inputs=[[t.name, t.shape] for t in network.inputs], flags=config.flags)
        if os.environ.get("FAKE_TRT_BUILD_FAILS"):
            return None
        return ("FAKE-ENGINE " + json.dumps(config.flags)).encode()
'''


def fake_package(root: Path, with_ixrt: bool) -> Path:
    (root / "tensorrt").mkdir(parents=True)
    (root / "tensorrt" / "__init__.py").write_text(textwrap.dedent(FAKE_TENSORRT))
    if with_ixrt:  # the ixRT SDK installs an ixrt module beside its tensorrt one; NVIDIA's TensorRT does not
        (root / "ixrt").mkdir()
        (root / "ixrt" / "__init__.py").write_text('"""FAKE ixrt: the test stand-in for the ixRT SDK\'s own module."""\n')
    return root


class FakeCudart:
    """FAKE cuda-python runtime: device memory is host numpy buffers; copies are real memmoves."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost = 1, 2

    def __init__(self):
        self.memory, self.freed = {}, []

    def cudaMalloc(self, n):
        handle = 0x1000 + len(self.memory)
        self.memory[handle] = np.zeros(n, np.uint8)
        return (0, handle)

    def cudaMemcpy(self, dst, src, n, kind):
        import ctypes

        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            ctypes.memmove(self.memory[dst].ctypes.data, src, n)
        else:
            ctypes.memmove(dst, self.memory[src].ctypes.data, n)
        return (0,)

    def cudaFree(self, handle):
        self.freed.append(handle)
        return (0,)

    # streams: copies and runs happen at once, so a stream only has to exist
    def cudaStreamCreate(self):
        self.streams = getattr(self, "streams", 0) + 1
        return (0, 0x5000 + self.streams)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert stream >= 0x5000
        return self.cudaMemcpy(dst, src, n, kind)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaStreamDestroy(self, stream):
        self.destroyed_stream = stream
        return (0,)
