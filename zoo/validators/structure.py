"""Structure read from an ONNX graph: parameter count, MACs, input and output shapes.

Conventions (the same as ``zoo.registry.arch_stats``, so the two must agree exactly):
- params: the source model's learnable parameters, reconstructed from the graph. Conv and Gemm
  weights and biases count as they are (a MatMul followed by an Add of a constant is a Linear layer); an explicit BatchNormalization counts its scale and bias;
  a Conv bias created by folding a BatchNorm into the conv stands for the BN's scale *and* bias, so
  it counts twice (every conv in a ResNeXt is followed by a BN, none has its own bias).
- MACs: Conv and Gemm/MatMul multiply-accumulates at batch 1; BN, activations, pooling and adds are
  not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.external_data_helper import uses_external_data


@dataclass(frozen=True)
class GraphStructure:
    params: int
    macs: int
    input_name: str
    input_shape: List[object]  # ints, or the name of a symbolic dimension
    output_name: str
    output_shape: List[object]
    op_counts: Dict[str, int]


def _dims(value: onnx.ValueInfoProto) -> List[object]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _numel(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


# Initializers up to this many elements keep their values in a weightless copy: shape inference reads
# the values of shape-giving tensors (Reshape's target, Slice's bounds), which are this small.
_KEEP_VALUES_UP_TO = 64


def weightless(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with each weight turned into a typed graph input of its shape, for shape inference.

    Inference needs the shapes of the weights, not their values, and handing it the whole model
    serialises every weight (0.3 s for resnext50, and a second copy of the weights in memory)."""
    g = model.graph
    graph = _copy_fields(onnx.GraphProto(), g, skip="initializer")
    declared = {i.name for i in g.input}
    for t in g.initializer:
        if _numel(t.dims) <= _KEEP_VALUES_UP_TO and not uses_external_data(t):
            graph.initializer.append(t)
        elif t.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    out = _copy_fields(onnx.ModelProto(), model, skip="graph")  # versions, opsets, functions, metadata
    out.graph.CopyFrom(graph)
    return out


def _copy_fields(out, message, skip: str):
    """``out`` with every field of ``message`` set in it, except ``skip``."""
    for desc, value in message.ListFields():
        if desc.name == skip:
            continue
        field = getattr(out, desc.name)
        if hasattr(field, "extend"):  # a repeated field
            field.extend(value)
        elif desc.message_type is not None:
            field.CopyFrom(value)
        else:
            setattr(out, desc.name, value)
    return out


def infer_shapes(model: onnx.ModelProto, strict: bool = False, check: bool = False) -> onnx.ModelProto:
    """``model`` (weights untouched) with the shapes of its intermediate values and outputs inferred;
    ``strict``: a type or shape conflict raises, as ``onnx.checker``'s full check does; ``check``: the
    checker runs too, on the weightless graph (it does not look inside raw weight data anyway)."""
    inferred = shape_inference.infer_shapes(weightless(model), check_type=strict, strict_mode=strict)
    if check:
        onnx.checker.check_model(inferred)
    for field in ("value_info", "output"):
        del getattr(model.graph, field)[:]
        getattr(model.graph, field).extend(getattr(inferred.graph, field))
    return model


def analyse(model: onnx.ModelProto) -> GraphStructure:
    """Count params and MACs. Symbolic batch dimensions are taken as 1."""
    g = model.graph
    init_shapes = {i.name: list(i.dims) for i in g.initializer}
    # Constants produced by Constant nodes (some exporters do this) count as initializers too.
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    init_shapes[node.output[0]] = list(numpy_helper.to_array(a.t).shape)

    graph_inputs = [i for i in g.input if i.name not in init_shapes]
    fixed = weightless(model)
    for v in list(fixed.graph.input) + list(fixed.graph.output):
        for d in v.type.tensor_type.shape.dim:
            if d.dim_param:
                d.Clear()
                d.dim_value = 1
    inferred = shape_inference.infer_shapes(fixed)
    shapes = {v.name: _dims(v) for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}

    producer = {o: n.op_type for n in g.node for o in n.output}
    params = macs = 0
    ops: Dict[str, int] = {}
    for node in g.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        if node.op_type == "Conv":
            w = init_shapes[node.input[1]]
            params += _numel(w)
            if len(node.input) > 2 and node.input[2]:
                params += 2 * _numel(init_shapes[node.input[2]])  # a folded BN: scale and bias
            out = shapes.get(node.output[0])
            macs += _numel(out[1:]) * _numel(w[1:]) if out else 0
        elif node.op_type in ("Gemm", "MatMul"):
            w = init_shapes.get(node.input[1])
            if w is None:
                continue
            params += _numel(w)
            if len(node.input) > 2 and node.input[2] in init_shapes:
                params += _numel(init_shapes[node.input[2]])
            macs += _numel(w)  # batch 1: one multiply-accumulate per weight
        elif node.op_type == "Add":
            # MatMul + Add is how some exporters (paddle2onnx) write a Linear layer: the Add holds its bias.
            inits = [i for i in node.input if i in init_shapes]
            others = [i for i in node.input if i not in init_shapes]
            if len(inits) == 1 and len(others) == 1 and producer.get(others[0]) == "MatMul":
                params += _numel(init_shapes[inits[0]])
        elif node.op_type == "BatchNormalization":
            params += _numel(init_shapes[node.input[1]]) + _numel(init_shapes[node.input[2]])
    return GraphStructure(
        params=params, macs=macs,
        input_name=graph_inputs[0].name, input_shape=_dims(graph_inputs[0]),
        output_name=g.output[0].name, output_shape=_dims(g.output[0]),
        op_counts=dict(sorted(ops.items())),
    )


def check_shapes(s: GraphStructure, size: int, num_classes: int, batch: Optional[int]) -> List[str]:
    """Problems with the input/output shapes; empty when they are as the registry says."""
    problems = []
    if s.input_shape[1:] != [3, size, size]:
        problems.append(f"input {s.input_name} is {s.input_shape}, expected [N, 3, {size}, {size}]")
    if s.output_shape[1:] != [num_classes]:
        problems.append(f"output {s.output_name} is {s.output_shape}, expected [N, {num_classes}]")
    want = "batch" if batch is None else batch
    if s.input_shape[0] != want:
        problems.append(f"input batch dimension is {s.input_shape[0]!r}, expected {want!r}")
    return problems
