"""Turn a source's raw ONNX export into the canonical ONNX every target starts from.

Canonical means: the input and output names asked for, dynamic or static batch as asked, simplified
by onnxsim, passing ``onnx.checker``, preprocessing / labels / provenance in ``metadata_props``, and
byte-identical for identical inputs. Models above protobuf's 2 GiB limit keep their weights in one
external data file beside the model.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import onnx

from zoo.converters.spec import OnnxSpec

PROTOBUF_LIMIT = 2**31 - 1  # bytes; beyond this a ModelProto cannot be serialised in one piece


def external_data_name(model_path: Path) -> str:
    """The single data file that sits beside a >2 GiB model: ``model.onnx`` -> ``model.onnx.data``."""
    return model_path.name + ".data"


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        node.output[:] = [new if x == old else x for x in node.output]
    for v in list(graph.input) + list(graph.output) + list(graph.value_info):
        if v.name == old:
            v.name = new


def _set_batch_dim(value: onnx.ValueInfoProto, spec: OnnxSpec) -> None:
    dim = value.type.tensor_type.shape.dim[0]
    if spec.dynamic_batch:
        dim.Clear()
        dim.dim_param = "batch"
    else:
        dim.Clear()
        dim.dim_value = spec.batch


def set_io(model: onnx.ModelProto, spec: OnnxSpec) -> onnx.ModelProto:
    """One input and one output, named as asked, with the batch dimension as asked."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise ValueError(f"expected one input and one output, found {len(inputs)} and {len(g.output)}")
    _rename_value(g, inputs[0].name, spec.input_name)
    _rename_value(g, g.output[0].name, spec.output_name)
    _set_batch_dim(g.input[[i.name for i in g.input].index(spec.input_name)], spec)
    _set_batch_dim(g.output[0], spec)
    del g.value_info[:]  # stale shapes from the exporter; shape inference recomputes them
    return model


def simplify(model: onnx.ModelProto, spec: OnnxSpec, size: int) -> onnx.ModelProto:
    from onnxsim import simplify as onnxsim_simplify

    shape = [spec.batch if not spec.dynamic_batch else 1, 3, size, size]
    simplified, ok = onnxsim_simplify(model, overwrite_input_shapes={spec.input_name: shape} if not spec.dynamic_batch else None,
                                      test_input_shapes={spec.input_name: shape})
    if not ok:
        raise RuntimeError("onnxsim could not validate the simplified model against the original")
    return simplified


def set_metadata(model: onnx.ModelProto, meta: Dict[str, object]) -> None:
    """Strings stay strings; everything else is stored as JSON so runtimes can parse it back."""
    del model.metadata_props[:]
    for key in sorted(meta):
        value = meta[key]
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def read_metadata(model: onnx.ModelProto) -> Dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def make_deterministic(model: onnx.ModelProto, producer: str) -> None:
    """Strip what varies between identical runs: doc strings with paths, producer versions."""
    model.producer_name = producer
    model.producer_version = ""
    model.doc_string = ""
    model.graph.doc_string = ""
    for node in model.graph.node:
        node.doc_string = ""


def save(model: onnx.ModelProto, path: Path) -> List[Path]:
    """Write the model (and, above 2 GiB, its one external data file). Returns the files written."""
    path = Path(path)
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save_model(model, str(path))
        return [path]
    data = path.parent / external_data_name(path)
    if data.exists():
        data.unlink()  # onnx appends to an existing data file
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return [path, data]


def finish(raw_path: Path, out_path: Path, spec: OnnxSpec, size: int, meta: Dict[str, object],
           producer: str = "resnext-zoo") -> List[Path]:
    """Raw export -> canonical ONNX at ``out_path``; returns the files written."""
    model = onnx.load(str(raw_path), load_external_data=True)
    model = set_io(model, spec)
    if spec.simplify and model.ByteSize() < PROTOBUF_LIMIT:
        model = simplify(model, spec, size)
    model = onnx.shape_inference.infer_shapes(model)
    set_metadata(model, meta)
    make_deterministic(model, producer)
    files = save(model, out_path)
    onnx.checker.check_model(str(out_path), full_check=True)
    return files


def file_size(paths: List[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)


def opset_of(model: onnx.ModelProto) -> Optional[int]:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return None
