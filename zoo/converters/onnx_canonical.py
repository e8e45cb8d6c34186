"""Turn a source's raw ONNX export into the canonical ONNX every target starts from.

Canonical means: the input and output names asked for, dynamic or static batch as asked, simplified
by onnxsim, passing ``onnx.checker``, preprocessing / labels / provenance in ``metadata_props``, and
byte-identical for identical inputs. Models above protobuf's 2 GiB limit keep their weights in one
external data file beside the model.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
from onnx.external_data_helper import (
    ExternalDataInfo, load_external_data_for_model, uses_external_data,
)

from zoo.converters.spec import OnnxSpec
from zoo.validators.structure import infer_shapes

PROTOBUF_LIMIT = 2**31 - 1  # bytes; beyond this a ModelProto cannot be serialised in one piece
EXTERNAL_ABOVE = 1024  # bytes; smaller tensors stay inside the model file, as onnx.save_model does


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
    """onnxsim's constant folding and graph rewrites, without its own output check (``check_n=0``): on a
    random input it compares the simplified model with the raw export, and every canonical model is then
    compared with the source model itself on the seeded parity sets (``zoo.build.source_checks``), which
    covers it. The check alone was 0.8 s of a 1.1 s simplify of resnext50."""
    from onnxsim import simplify as onnxsim_simplify

    shape = [spec.batch if not spec.dynamic_batch else 1, 3, size, size]
    simplified, _ = onnxsim_simplify(model, check_n=0,
                                     overwrite_input_shapes={spec.input_name: shape} if not spec.dynamic_batch else None)
    return simplified


def set_metadata(model: onnx.ModelProto, meta: Dict[str, object]) -> None:
    """Strings stay strings; everything else is stored as JSON so runtimes can parse it back."""
    del model.metadata_props[:]
    for key in sorted(meta):
        value = meta[key]
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)


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
                    location=data.name, size_threshold=EXTERNAL_ABOVE)
    return [path, data]


@dataclass
class Canonical:
    files: List[Path]  # the model, then its external data file if it has one
    simplify: Dict[str, object]  # what simplification did, or why it was skipped


def finish(raw_path: Path, out_path: Path, spec: OnnxSpec, size: int, meta: Dict[str, object],
           producer: str = "resnext-zoo") -> Canonical:
    """Raw export (with or without external data) -> canonical ONNX at ``out_path``."""
    model = onnx.load(str(raw_path), load_external_data=False)  # the graph only: small at any model size
    weight_bytes = external_bytes(model, Path(raw_path).parent)
    if weight_bytes + model.ByteSize() < PROTOBUF_LIMIT:
        if weight_bytes:
            load_external_data_for_model(model, str(Path(raw_path).parent))
        model = set_io(model, spec)
        simplified = {"tool": "onnxsim", "applied": False}
        if spec.simplify:
            model = simplify(model, spec, size)
            simplified["applied"] = True
        set_metadata(model, meta)
        make_deterministic(model, producer)
        model = infer_shapes(model, strict=True, check=True)  # what the checker's full check does
        files = save(model, out_path)
        if len(files) > 1:  # simplified past 2 GiB: the file, so the external data's location is checked too
            onnx.checker.check_model(str(out_path))
    else:
        # Over 2 GiB, onnxsim cannot serialise the model. The exporters have already folded
        # constants (torch's do_constant_folding, paddle2onnx's optimiser); what is left to do is
        # shape inference, which needs only the graph, and moving the weights into one data file,
        # streamed tensor by tensor so they are never all in memory.
        model = set_io(model, spec)
        model = infer_shapes(model, strict=True)
        set_metadata(model, meta)
        make_deterministic(model, producer)
        data = Path(out_path).parent / external_data_name(Path(out_path))
        relocate_external_data(model, Path(raw_path).parent, data)
        onnx.save_model(model, str(out_path))
        onnx.checker.check_model(str(out_path))  # the file, so the external data's locations are checked too
        files = [Path(out_path), data]
        simplified = {"tool": "onnxsim", "applied": False,
                      "skipped": f"{(weight_bytes + model.ByteSize()) / 2**30:.2f} GiB is over protobuf's 2 GiB "
                                 "limit, which onnxsim needs to serialise the model; shape inference applied, "
                                 "constants were folded by the exporter"}
    return Canonical(files, simplified)


def external_bytes(model: onnx.ModelProto, base_dir: Path) -> int:
    """Bytes of the initializers that live in external data (0 for a self-contained model).

    torch's exporter writes one file per tensor and records no length: the file's size counts."""
    total = 0
    for t in model.graph.initializer:
        if uses_external_data(t):
            info = ExternalDataInfo(t)
            total += info.length or (Path(base_dir) / info.location).stat().st_size - (info.offset or 0)
    return total


def relocate_external_data(model: onnx.ModelProto, src_dir: Path, data_path: Path) -> None:
    """Copy every external initializer into ``data_path`` (one file) and point the model at it.

    Streams one tensor at a time, in initializer order, so the result is byte-identical for
    identical inputs and peak memory is one tensor, whatever the exporter's file layout was."""
    data_path.unlink(missing_ok=True)
    with open(data_path, "wb") as out:
        for t in model.graph.initializer:
            if uses_external_data(t):
                info = ExternalDataInfo(t)
                with open(Path(src_dir) / info.location, "rb") as src:
                    src.seek(info.offset or 0)
                    payload = src.read(info.length) if info.length else src.read()
            elif t.HasField("raw_data") and len(t.raw_data) >= EXTERNAL_ABOVE:
                payload = t.raw_data
                t.ClearField("raw_data")
            else:
                continue
            offset = out.tell()
            out.write(payload)
            _point_at(t, data_path.name, offset, len(payload))


def _point_at(t: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    """Make ``t`` reference ``length`` bytes at ``offset`` of ``location`` (onnx's own
    ``set_external_data`` insists on a raw_data field, which a streamed tensor never had)."""
    t.ClearField("raw_data")
    del t.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    t.data_location = onnx.TensorProto.EXTERNAL


class ExternalDataWriter:
    """Append arrays to one external data file as initializers, one at a time (for exporters that
    cannot write a model over 2 GiB themselves)."""

    def __init__(self, data_path: Path) -> None:
        self.path = Path(data_path)
        self.path.unlink(missing_ok=True)
        self._file = open(self.path, "wb")

    def tensor(self, array: np.ndarray, name: str) -> onnx.TensorProto:
        array = np.ascontiguousarray(array)
        t = onnx.TensorProto(name=name, dims=list(array.shape),
                             data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
        offset = self._file.tell()
        self._file.write(array.tobytes())  # little-endian hosts: ONNX raw data is little-endian
        _point_at(t, self.path.name, offset, array.nbytes)
        return t

    def close(self) -> None:
        self._file.close()
