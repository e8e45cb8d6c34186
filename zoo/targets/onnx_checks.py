"""Checks a vendor's target-ready ONNX must pass: opset, static shape, input name, supported ops."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import onnx

from zoo.targets.base import Check

# The ops a ResNeXt needs (and that every vendor compiler here supports): convolutions, BN (when
# not folded), activations, pooling, residual adds, the classifier, and PaddleClas's softmax.
RESNEXT_OPS = frozenset({
    "Conv", "BatchNormalization", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Add",
    "Flatten", "Reshape", "Squeeze", "Gemm", "MatMul", "Softmax", "Constant",
})


def _dims(value: onnx.ValueInfoProto) -> List[object]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value.type.tensor_type.shape.dim]


def onnx_requirements(path: Path, opset: int, input_name: str, shape: Optional[Sequence[int]],
                      allowed_ops: Iterable[str] = RESNEXT_OPS) -> List[Check]:
    """One Check per requirement; ``shape`` None means a dynamic batch is allowed."""
    model = onnx.load(str(path), load_external_data=False)
    checks = []
    got_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    checks.append(Check("onnx opset", got_opset == opset, f"opset {got_opset}, expected {opset}"))
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    checks.append(Check("onnx input name", names == [input_name], f"inputs {names}, expected ['{input_name}']"))
    if shape is not None and inputs:
        dims = _dims(inputs[0])
        checks.append(Check("onnx static input shape", dims == list(shape), f"input {dims}, expected {list(shape)}"))
        out_dims = _dims(model.graph.output[0])
        static = all(isinstance(d, int) and d > 0 for d in out_dims)
        checks.append(Check("onnx static output shape", static, f"output {out_dims}"))
    unsupported = sorted({n.op_type for n in model.graph.node} - set(allowed_ops))
    checks.append(Check("onnx ops supported", not unsupported,
                        f"unsupported: {', '.join(unsupported)}" if unsupported else "all ops supported"))
    try:
        onnx.checker.check_model(str(path))
        checks.append(Check("onnx checker", True, "onnx.checker passed"))
    except onnx.checker.ValidationError as e:
        checks.append(Check("onnx checker", False, str(e).splitlines()[0]))
    return checks
