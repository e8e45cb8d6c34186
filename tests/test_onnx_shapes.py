"""Shape inference on the weightless graph (zoo.validators.structure): the shapes onnx infers on the whole model."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zoo.validators.structure import infer_shapes, weightless


def small_net(classes: int = 10, declared_classes: int = 10) -> onnx.ModelProto:
    """Conv -> Relu -> Reshape (its target shape is a small initializer whose values inference reads) -> Gemm."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array(np.array([-1, 8 * 14 * 14], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((classes, 8 * 14 * 14)).astype(np.float32), "fc"),
    ]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]), helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", declared_classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {"zoo.variant": "small"})
    return model


def shapes(model: onnx.ModelProto) -> dict:
    return {v.name: v.type for v in list(model.graph.value_info) + list(model.graph.output)}


def test_the_weightless_graph_infers_what_the_whole_model_does():
    model = small_net()
    expected = shapes(onnx.shape_inference.infer_shapes(model))  # onnx's own inference, weights and all
    assert set(expected) == {"c", "r", "f", "y"}
    # the Reshape's output has its static width only because its target shape's values were kept
    assert [d.dim_value for d in expected["f"].tensor_type.shape.dim][1:] == [8 * 14 * 14]
    light = weightless(model)
    assert light.ByteSize() < model.ByteSize() / 10 and light.metadata_props == model.metadata_props
    assert {i.name for i in light.graph.initializer} == {"b", "shape"}  # up to 64 values each
    weights = {i.name for i in model.graph.initializer}
    before = model.SerializeToString()
    result = infer_shapes(model)
    assert shapes(result) == expected
    # the weights are untouched: only the value_info and output entries changed
    assert [t.SerializeToString() for t in result.graph.initializer] == \
        [t.SerializeToString() for t in onnx.load_from_string(before).graph.initializer]
    assert {i.name for i in result.graph.initializer} == weights


def test_strict_inference_refuses_what_the_full_check_refuses():
    wrong = small_net(classes=10, declared_classes=11)  # the graph computes 10 classes, the output says 11
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.checker.check_model(wrong, full_check=True)
    with pytest.raises(onnx.shape_inference.InferenceError):
        infer_shapes(wrong, strict=True)
