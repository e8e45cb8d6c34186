"""Post-training int8 with NNCF, for the OpenVINO IR and the ONNX model alike.

``quantize`` is ``nncf.quantize`` on the job's calibration batches (the same images every other
int8 target calibrates on). ``restore_accuracy`` is ``nncf.quantize_with_accuracy_control``: it
quantizes, ranks the quantized layers by how much each costs in top-1 on a labelled set, and
returns the most sensitive ones to float until the drop is within ``max_drop`` (NNCF only warns
when it cannot get there; the caller measures the result itself and fails the build).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np

from zoo.errors import UserError
from zoo.targets.base import Runner, run_static

# Ops whose int8 form does the arithmetic; a model's "float layers" are these with a float input.
ONNX_COMPUTE = ("Conv", "Gemm", "MatMul")
OV_COMPUTE = ("Convolution", "GroupConvolution", "MatMul")
# Ops a quantized tensor passes through unchanged in scale (NNCF puts the quantizer before them).
PASS_THROUGH = ("MaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "GlobalAveragePool",
                "AvgPool", "AveragePool", "ReduceMean")


@dataclass
class Labelled:
    """Preprocessed images (one array each, [1, C, H, W]) and their labels: NNCF's validation items."""

    arrays: List[np.ndarray]
    labels: List[int]


def require_nncf(progress: bool = True):
    """NNCF, with its INFO lines and progress bars only when progress is on."""
    import logging

    # NNCF looks for torch on import; torch then warns on stderr that this machine has no CUDA.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise UserError("int8 with NNCF needs the nncf package; install it with: "
                        "pip install 'resnext-zoo[openvino]'") from None
    nncf.set_log_level(logging.INFO if progress else logging.WARNING)
    return nncf


def ignored_softmax(nncf):
    # A closing Softmax (PaddleClas) stays in float, as in every other int8 path.
    return nncf.IgnoredScope(types=["Softmax"], validate=False)


def quantize(model: Any, batches: Sequence[np.ndarray], progress: bool = True) -> Any:
    """``nncf.quantize`` of an ``ov.Model`` or ``onnx.ModelProto`` on calibration ``batches``."""
    nncf = require_nncf(progress)
    data = nncf.Dataset(list(batches), _feed(model))
    with _bars_to_stderr(progress):
        return nncf.quantize(model, data, subset_size=len(batches), ignored_scope=ignored_softmax(nncf))


def restore_accuracy(model: Any, batches: Sequence[np.ndarray], labelled: Labelled, max_drop_pp: float,
                     batch: Optional[int], max_float_layers: Optional[int] = None, progress: bool = True) -> Any:
    """``nncf.quantize_with_accuracy_control``: int8, with layers returned to float until top-1
    drops by at most ``max_drop_pp`` percentage points (absolute) on ``labelled``."""
    nncf = require_nncf(progress)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    restorer = AdvancedAccuracyRestorerParameters(num_ranking_workers=1)
    if max_float_layers is not None:
        restorer.max_num_iterations = max_float_layers
    items = list(zip(labelled.arrays, labelled.labels))

    def validate(compiled: Any, data) -> tuple:
        run = runner_of(compiled, batch)
        hits = [float(np.argmax(run(x)[0]) == y) for x, y in data]
        return float(np.mean(hits)), hits

    with _bars_to_stderr(progress):
        return nncf.quantize_with_accuracy_control(
            model, nncf.Dataset(list(batches), _feed(model)), nncf.Dataset(items, lambda item: _feed(model)(item[0])),
            validate, max_drop=max_drop_pp / 100.0, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(batches),
            ignored_scope=ignored_softmax(nncf), advanced_accuracy_restorer_parameters=restorer,
        )


@contextlib.contextmanager
def _bars_to_stderr(progress: bool) -> Iterator[None]:
    """NNCF draws its progress bars and INFO lines on stdout, where the summary goes: send them to
    stderr with the zoo's own stage lines, or nowhere without progress."""
    if progress:
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def runner_of(model: Any, batch: Optional[int]) -> Runner:
    """Run whatever NNCF hands a validation function: an OpenVINO compiled model or model, or an
    ONNX ModelProto (run by ONNX Runtime), float32 in, float32 scores out."""
    if hasattr(model, "create_infer_request") or type(model).__module__.startswith("openvino"):
        import openvino as ov

        compiled = model if hasattr(model, "create_infer_request") else ov.Core().compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        return lambda x: run_static(lambda c: np.asarray(request.infer({0: c})[0], dtype=np.float32).copy(), x, batch)
    from zoo.ort_session import runner

    return runner(model.SerializeToString(), batch)


def float_layers(model: Any) -> List[str]:
    """The compute layers (conv, matmul) of an int8 model whose input is not quantized."""
    if hasattr(model, "get_ordered_ops"):
        def ov_source(op):
            src = op.input_value(0).get_node()
            while src.get_type_name() in PASS_THROUGH:
                src = src.input_value(0).get_node()
            return src.get_type_name()

        return [op.get_friendly_name() for op in model.get_ordered_ops()
                if op.get_type_name() in OV_COMPUTE and ov_source(op) != "FakeQuantize"]
    producers = {o: n for n in model.graph.node for o in n.output}

    def onnx_source(node):
        src = producers.get(node.input[0])
        while src is not None and src.op_type in PASS_THROUGH:
            src = producers.get(src.input[0])
        return getattr(src, "op_type", None)

    return [n.name for n in model.graph.node if n.op_type in ONNX_COMPUTE and onnx_source(n) != "DequantizeLinear"]


def compute_layers(model: Any) -> int:
    if hasattr(model, "get_ordered_ops"):
        return sum(op.get_type_name() in OV_COMPUTE for op in model.get_ordered_ops())
    return sum(n.op_type in ONNX_COMPUTE for n in model.graph.node)


def summary(model: Any, method: str) -> Dict[str, Any]:
    """What the manifest records about an NNCF-quantized model."""
    nncf = require_nncf()
    floats = float_layers(model)
    return {"tool": f"nncf {nncf.__version__}", "method": method, "float_layers": floats,
            "int8_layers": compute_layers(model) - len(floats)}


def _feed(model: Any):
    """NNCF's transform: the batch as the model's input (OpenVINO takes the array, ONNX a dict)."""
    if hasattr(model, "graph"):
        name = model.graph.input[0].name
        return lambda x: {name: x}
    return lambda x: x
