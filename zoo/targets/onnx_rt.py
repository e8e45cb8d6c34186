"""ONNX for ONNX Runtime: the canonical fp32 model itself, its float16 copy, or a static QDQ int8 model.

fp16 converts with ONNX Runtime's own float16 tool, keeping the float32 input and output (callers
feed float32 images and read float32 scores). int8 is ``quantize_static`` in QDQ format with the
types ONNX Runtime's CPU kernels run fastest (uint8 activations, per-channel int8 weights: about
1.8x fp32 on a ResNeXt-50, where symmetric int8 activations ran slower than fp32), calibrated on
images preprocessed exactly as the registry says.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from zoo.converters.onnx_canonical import PROTOBUF_LIMIT, external_data_name, save
from zoo import ort_session
from zoo.errors import UserError
from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import NPY_FORMAT, Built, Check, NativeSession, Runner, Target, TargetJob
from zoo.targets.kit import copy_onnx
from zoo.targets.quantize import METHODS, TYPES, calibration_reader, count_qdq, quantize_qdq


@dataclass
class Fp16Options:
    keep_io_types: bool = True


@dataclass
class OrtInt8Options:
    calib_images: int = 32
    calibrate_method: str = "MinMax"
    per_channel: bool = True
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    activation_symmetric: bool = False
    weight_symmetric: bool = True

    def __post_init__(self) -> None:
        bounds.at_least("target.int8.calib_images", self.calib_images, 1, "give at least 1 calibration image")


@dataclass
class OnnxOptions(ExportOptions):
    fp16: Fp16Options = field(default_factory=Fp16Options)
    int8: OrtInt8Options = field(default_factory=OrtInt8Options)


class OnnxTarget(Target):
    name = "onnx"
    options = OnnxOptions
    tools = ("onnxruntime",)
    extra = "onnx"
    memory_factor, streamed_memory_factor = 6.0, 2.5  # streamed: 2.29-2.43x measured (bench/bench_wsl.py)
    calib_format = NPY_FORMAT
    hub_library = "onnx"
    has_runtime = True
    restores_accuracy = True

    def usage_code(self, manifest: Dict[str, Any], input_name: str, x: str) -> Optional[Dict[str, List[str]]]:
        primary = manifest["artifact"]["primary"]
        return {"imports": ["import onnxruntime as ort"],
                "load": [f'session = ort.InferenceSession("{primary}", providers=["CPUExecutionProvider"])'],
                "score": [f'scores = session.run(None, {{"{input_name}": {x}}})[0][0]']}

    def check_options(self, options, precision) -> None:
        super().check_options(options, precision)
        method = options["int8"]["calibrate_method"]
        if precision == "int8" and method not in METHODS:
            raise UserError(f"target.int8.calibrate_method={method}: choose one of {', '.join(METHODS)}")
        for key in ("activation_type", "weight_type"):
            if precision == "int8" and options["int8"][key] not in TYPES:
                raise UserError(f"target.int8.{key}={options['int8'][key]}: choose one of {', '.join(TYPES)}")

    def writes_own_weights(self, precision: str) -> bool:
        return precision != "fp32"  # fp32 is the canonical model, hard-linked

    def prepare(self, job: TargetJob) -> Path:
        """fp32: the canonical model, copied into the artifact folder (with its external data, if any);
        fp16 / int8: where the converted model will be written (compile reads the canonical one)."""
        dst = job.stage / "model.onnx"
        if job.precision != "fp32":
            return dst
        return copy_onnx(job.onnx_path, dst)

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        import onnx
        import onnxruntime as ort

        compiler = f"onnxruntime {ort.__version__}"
        if job.precision == "fp32":
            return Built(files=_with_data(prepared), primary=prepared, compiled=True, compiler=compiler,
                         info={"parity_skipped": "the artifact is the canonical ONNX, checked against the source model"})
        fp32 = job.onnx_path
        large = _has_external_data(fp32)
        if large and job.precision == "int8":
            raise UserError("int8 ONNX of a model above 2 GiB is not supported here (static calibration of a "
                            "3 GiB graph); use precision=fp16, or target=openvino")
        files = [prepared]
        if job.precision == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16
            from onnxruntime.transformers.onnx_model import OnnxModel

            keep_io = bool(job.options["fp16"]["keep_io_types"])
            # Over 2 GiB the fp32 model cannot be serialised for the converter's own shape inference;
            # the canonical model already carries inferred shapes, so it is skipped there.
            model = OnnxModel(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=keep_io,
                                                       disable_shape_infer=large))
            model.topological_sort()  # the converter appends the input Cast last; the checker wants graph order
            files = save(model.model, prepared)  # one data file beside it if even fp16 is over 2 GiB
            del model
            info = {"keep_io_types": keep_io, "tool": "onnxruntime.transformers.float16"}
            checks = [_io_dtype_check(prepared, "float32" if keep_io else "float16")]
        else:
            q = job.options["int8"]
            batch = None if job.spec.dynamic_batch else job.spec.batch
            reader = calibration_reader(job, int(q["calib_images"]), batch)
            info = quantize_qdq(fp32, prepared, reader, method=str(q["calibrate_method"]),
                                per_channel=bool(q["per_channel"]), activation_type=str(q["activation_type"]),
                                weight_type=str(q["weight_type"]), activation_symmetric=bool(q["activation_symmetric"]),
                                weight_symmetric=bool(q["weight_symmetric"]))
            info["calibration_method"] = (f"onnxruntime quantize_static {info['calibrate_method']}, "
                                          f"{info['activation']} activations / {info['weight']} weights")
            info["qdq_nodes"], check = _qdq_check(prepared)
            checks = [check]
        onnx.checker.check_model(str(prepared))
        return Built(files=files, primary=prepared, compiled=True, compiler=compiler, checks=checks, info=info)

    def restore_accuracy(self, job: TargetJob, built: Built, labelled, max_drop_pp: float,
                         max_float_layers: Optional[int]) -> Built:
        """NNCF's accuracy control on the canonical ONNX (its ONNX backend), calibrated on the same
        images; the QDQ model it returns replaces the first one."""
        import onnx

        from zoo.targets import nncf_quantize
        from zoo.targets.quantize import calibration_batches, calibration_reader

        batch = None if job.spec.dynamic_batch else job.spec.batch
        batches = calibration_batches(calibration_reader(job, int(job.options["int8"]["calib_images"]), batch))
        model = nncf_quantize.restore_accuracy(onnx.load(str(job.onnx_path)), batches, labelled, max_drop_pp,
                                               batch, max_float_layers, job.progress)
        onnx.save(model, str(built.primary))
        info = {"format": "QDQ", **nncf_quantize.summary(model, "nncf.quantize_with_accuracy_control")}
        info["calibration_method"] = f"{info['tool']} quantize_with_accuracy_control (max drop {max_drop_pp} pp)"
        info["qdq_nodes"], check = _qdq_check(built.primary)
        checks = [c for c in built.checks if c.name != check.name] + [check]
        onnx.checker.check_model(str(built.primary))
        return Built(files=built.files, primary=built.primary, compiled=True, compiler=built.compiler,
                     checks=checks, info=info)

    def native_session(self, primary: Path, precision: str, threads: int, batch: int) -> Optional[NativeSession]:
        import onnxruntime as ort

        # one request at a time: the sequential executor uses intra-op threads only
        sess = ort_session.session(primary, threads, sequential=True)
        inp = sess.get_inputs()[0]
        dtype = {"tensor(float16)": "float16"}.get(inp.type, "float32")
        name = inp.name
        return NativeSession(call=lambda x: sess.run(None, {name: x}), input_dtype=dtype,
                             runtime=f"onnxruntime {ort.__version__}")

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        return ort_session.runner(built.primary, None if job.spec.dynamic_batch else job.spec.batch)


def _qdq_check(path: Path) -> Tuple[Dict[str, int], Check]:
    counts = count_qdq(path)
    return counts, Check("int8 model is QDQ", min(counts.values()) > 0,
                         f"{counts['QuantizeLinear']} QuantizeLinear, {counts['DequantizeLinear']} DequantizeLinear")


def _with_data(path: Path) -> List[Path]:
    data = path.with_name(external_data_name(path))
    return [path, data] if data.exists() else [path]


def _has_external_data(path: Path) -> bool:
    return path.with_name(external_data_name(path)).exists() or path.stat().st_size >= PROTOBUF_LIMIT


def _io_dtype_check(path: Path, expected: str) -> Check:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    types = {onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name for v in list(g.input) + list(g.output)}
    return Check("fp16 model input/output dtype", types == {expected}, f"inputs/outputs are {sorted(types)}, expected {expected}")
