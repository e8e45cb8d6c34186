"""OpenVINO IR (``model.xml`` + ``model.bin``) from the canonical ONNX, run by the CPU plugin.

``ov.convert_model`` reads the ONNX; ``ov.save_model`` writes the IR, compressing weights to float16
for precision fp16 (the CPU plugin decompresses them and computes in its own inference precision).
int8 is NNCF's post-training quantization of the converted model, calibrated on the same images as
every other int8 target (``zoo.targets.nncf_quantize``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import NPY_FORMAT, Built, Check, NativeSession, Runner, Target, TargetJob, run_static


@dataclass
class NncfInt8Options:
    calib_images: int = 32

    def __post_init__(self) -> None:
        bounds.at_least("target.int8.calib_images", self.calib_images, 1, "give at least 1 calibration image")


@dataclass
class OpenVinoOptions(ExportOptions):
    int8: NncfInt8Options = field(default_factory=NncfInt8Options)


def inference_config(core, precision: str) -> dict:
    """The CPU plugin computes in bf16 by default where the processor has it (AMX), which is neither
    precision asked for: an fp32 artifact runs in f32, an fp16 one in f16 where the CPU supports it."""
    if precision in ("fp32", "int8"):  # int8: the layers NNCF left in float run as the canonical model's
        return {"INFERENCE_PRECISION_HINT": "f32"}
    if "FP16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return {"INFERENCE_PRECISION_HINT": "f16"}
    return {}


class OpenVinoTarget(Target):
    name = "openvino"
    options = OpenVinoOptions
    tools = ("openvino", "nncf")  # nncf quantizes the int8 IR
    extra = "openvino,onnx"
    memory_factor, streamed_memory_factor = 6.0, 3.0  # streamed: the plugin holds its own copy of the weights
    calib_format = NPY_FORMAT
    hub_library = "openvino"
    has_runtime = True
    restores_accuracy = True

    def usage_code(self, manifest: Dict[str, Any], input_name: str, x: str) -> Optional[Dict[str, List[str]]]:
        # the same precision choice as inference_config: f16 only where the CPU computes in it
        load = ["core = ov.Core()"]
        if manifest["precision"] == "fp16":
            load += ['fp16 = "FP16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")',
                     'config = {"INFERENCE_PRECISION_HINT": "f16"} if fp16 else {}']
        else:
            load.append('config = {"INFERENCE_PRECISION_HINT": "f32"}')
        load.append(f'model = core.compile_model("{manifest["artifact"]["primary"]}", "CPU", config)')
        return {"imports": ["import openvino as ov"], "load": load, "score": [f"scores = model({x})[0][0]"]}

    def prepare(self, job: TargetJob) -> Path:
        return job.onnx_path  # OpenVINO reads the canonical ONNX directly

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        import openvino as ov

        model = ov.convert_model(str(prepared))
        info = {}
        if job.precision == "int8":
            model, info = self._quantize(job, model)
        return self._save(job, model, info)

    def _quantize(self, job: TargetJob, model):
        from zoo.targets import nncf_quantize
        from zoo.targets.quantize import calibration_batches, calibration_reader

        batch = None if job.spec.dynamic_batch else job.spec.batch
        batches = calibration_batches(calibration_reader(job, int(job.options["int8"]["calib_images"]), batch))
        model = nncf_quantize.quantize(model, batches, job.progress)
        info = nncf_quantize.summary(model, "nncf.quantize")
        info["calibration_method"] = f"{info['tool']} quantize (min-max ranges, fast bias correction)"
        return model, info

    def restore_accuracy(self, job: TargetJob, built: Built, labelled, max_drop_pp: float,
                         max_float_layers: Optional[int]) -> Built:
        import openvino as ov

        from zoo.targets import nncf_quantize
        from zoo.targets.quantize import calibration_batches, calibration_reader

        batch = None if job.spec.dynamic_batch else job.spec.batch
        batches = calibration_batches(calibration_reader(job, int(job.options["int8"]["calib_images"]), batch))
        model = nncf_quantize.restore_accuracy(ov.convert_model(str(job.onnx_path)), batches, labelled,
                                               max_drop_pp, batch, max_float_layers, job.progress)
        info = nncf_quantize.summary(model, "nncf.quantize_with_accuracy_control")
        info["calibration_method"] = f"{info['tool']} quantize_with_accuracy_control (max drop {max_drop_pp} pp)"
        return self._save(job, model, info)

    def _save(self, job: TargetJob, model, info) -> Built:
        import openvino as ov

        xml = job.stage / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=job.precision == "fp16")
        bin_ = xml.with_suffix(".bin")
        reread = ov.Core().read_model(str(xml))
        shape = reread.inputs[0].get_partial_shape()
        dynamic = shape[0].is_dynamic
        checks = [
            Check("IR reads back", len(reread.inputs) == 1 and len(reread.outputs) == 1,
                  f"{len(reread.inputs)} input(s), {len(reread.outputs)} output(s)"),
            Check("IR batch as asked", dynamic == job.spec.dynamic_batch, f"input shape {shape}"),
        ]
        if job.precision == "fp16":
            consts = [op for op in reread.get_ordered_ops() if op.get_type_name() == "Constant"]
            f16 = sum(1 for c in consts if c.get_element_type() == ov.Type.f16)
            checks.append(Check("weights compressed to fp16", f16 > 0, f"{f16} float16 constants"))
        if job.precision == "int8":
            fq = sum(1 for op in reread.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
            checks.append(Check("IR is quantized (FakeQuantize on activations)", fq > 0, f"{fq} FakeQuantize ops"))
        info.update(input_shape=str(shape), compress_to_fp16=job.precision == "fp16")
        return Built(files=[xml, bin_], primary=xml, compiled=True, compiler=f"openvino {ov.__version__}",
                     checks=checks, info=info)

    def native_session(self, primary: Path, precision: str, threads: int, batch: int) -> Optional[NativeSession]:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(primary))
        shape = model.input(0).get_partial_shape()
        if shape.rank.is_static and shape[0].is_dynamic:  # a deployment at one batch compiles for that shape:
            model.reshape({0: [batch, *[d.get_length() for d in list(shape)[1:]]]})  # 5-8% faster than dynamic
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, **inference_config(core, precision)}
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        dtype = compiled.input(0).get_element_type().to_dtype().name
        return NativeSession(call=lambda x: request.infer({0: x}, share_inputs=True), input_dtype=dtype,
                             runtime=f"openvino {ov.__version__}")

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        import numpy as np
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(str(built.primary), "CPU", inference_config(core, job.precision))
        built.info["inference_precision"] = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        request = compiled.create_infer_request()
        batch = None if job.spec.dynamic_batch else job.spec.batch

        def run(x):
            return run_static(lambda c: np.asarray(request.infer({0: c})[0], dtype=np.float32).copy(), x, batch)

        return run
