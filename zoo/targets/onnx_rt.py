"""ONNX for ONNX Runtime: the canonical fp32 model itself, its float16 copy, or a static QDQ int8 model.

fp16 converts with ONNX Runtime's own float16 tool, keeping the float32 input and output (callers
feed float32 images and read float32 scores). int8 is ``quantize_static`` in QDQ format, per-channel
and symmetric, calibrated on images preprocessed exactly as the registry says.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from zoo.converters.onnx_canonical import PROTOBUF_LIMIT, external_data_name, save
from zoo.errors import UserError
from zoo.targets.base import Built, Check, Runner, Target, TargetJob, run_static
from zoo.targets.kit import copy_onnx
from zoo.targets.quantize import METHODS, ImageCalibrationReader, count_qdq, quantize_qdq


def ort_runner(path: Path, batch: Optional[int], threads: int = 0) -> Runner:
    """A float32-in, float32-out runner over an ONNX Runtime CPU session."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def run(x):
        return run_static(lambda c: np.asarray(sess.run(None, {name: c})[0], dtype=np.float32), x, batch)

    return run


class OnnxTarget(Target):
    name = "onnx"

    def check_options(self, options, precision) -> None:
        super().check_options(options, precision)
        method = options["int8"]["calibrate_method"]
        if precision == "int8" and method not in METHODS:
            raise UserError(f"target.int8.calibrate_method={method}: choose one of {', '.join(METHODS)}")
        if precision == "int8" and int(options["int8"]["calib_images"]) < 1:
            raise UserError("target.int8.calib_images must be at least 1")

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
            from zoo.calib_formats import NpyCalibrationReader, is_npy_set

            if job.calib_data is not None and is_npy_set(job.calib_data):  # a set made by `zoo calib target=onnx`
                reader = NpyCalibrationReader(job.calib_data, job.spec.input_name, batch or 1)
            else:
                reader = ImageCalibrationReader(job.calibration(int(q["calib_images"])), job.input,
                                                job.spec.input_name, batch)
            info = quantize_qdq(fp32, prepared, reader, method=str(q["calibrate_method"]),
                                per_channel=bool(q["per_channel"]), symmetric=bool(q["symmetric"]))
            counts = count_qdq(prepared)
            info["qdq_nodes"] = counts
            checks = [Check("int8 model is QDQ", min(counts.values()) > 0,
                            f"{counts['QuantizeLinear']} QuantizeLinear, {counts['DequantizeLinear']} DequantizeLinear")]
        onnx.checker.check_model(str(prepared))
        return Built(files=files, primary=prepared, compiled=True, compiler=compiler, checks=checks, info=info)

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        return ort_runner(built.primary, None if job.spec.dynamic_batch else job.spec.batch)


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
