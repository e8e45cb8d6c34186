"""NVIDIA TensorRT: an engine from the canonical ONNX where TensorRT 10 and an NVIDIA GPU are here, else its kit.

The kit holds ``<model>_<batch>.onnx`` (the canonical model at a static batch), for int8 the
symmetric QDQ model (TensorRT takes zero points of 0 only: the same recipe as the ixRT kit),
``build_engine.py`` (TensorRT 10's Python builder and a cuda-python runner) and a README with the
commands, ``trtexec`` among them. Where TensorRT and a GPU are present the engine is built in a
child process, run back with TensorRT, and gated against the canonical ONNX like any runnable
artifact. Elsewhere nothing pretends: the kit says that the compiler was not run, and no engine
file is written. Iluvatar's ixRT (a ``tensorrt`` look-alike) is the ixrt target's, never this one's.
"""
from __future__ import annotations

import importlib.util
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from zoo.errors import UserError
from zoo.targets.base import NPY_FORMAT, Built, Runner, Target, TargetJob, run_static
from zoo.targets.ixrt import (OBSERVER_OF_METHOD, IxrtOptions, int8_cosine_check, make_static, qdq_checks, quantize_int8,
                              run_builder, static_parity_check)
from zoo.targets.kit import KIT_README, calibration_record, calibration_section, device_listed, kit_files
from zoo.targets.onnx_checks import onnx_requirements


@dataclass
class TensorrtOptions(IxrtOptions):
    """The same keys as ixRT's: a static batch, the symmetric QDQ recipe, the builder's pool and time limit."""

PRECISIONS = ("fp16", "int8")
BUILDER_SOURCE = Path(__file__).with_name("trt_engine.py")


@dataclass(frozen=True)
class TrtNames:
    """File names inside the kit."""

    model: str
    batch: int
    precision: str
    builder: str = "build_engine.py"
    readme: str = KIT_README

    @property
    def static(self) -> str:
        return f"{self.model}_{self.batch}.onnx"

    @property
    def qdq(self) -> str:
        return f"{self.model}_int8_qdq_{self.batch}.onnx"

    @property
    def engine(self) -> str:
        return f"{self.model}_{self.precision}_bs{self.batch}.engine"

    @property
    def build_input(self) -> str:
        return self.qdq if self.precision == "int8" else self.static


def trt_names(job: TargetJob) -> TrtNames:
    return TrtNames(job.variant.name, int(job.options["batch"]), job.precision)


def builder_package() -> Optional[str]:
    """``tensorrt`` where NVIDIA's module is importable (found, not imported: it loads CUDA); ixRT's is not it."""
    if importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("ixrt") is None:
        return "tensorrt"
    return None


def gpu_present() -> bool:
    """An NVIDIA GPU answers ``nvidia-smi -L``."""
    return device_listed("nvidia-smi", "GPU")


def build_commands(names: TrtNames, workspace_gib: float) -> List[str]:
    """The kit's builder script, and trtexec as the alternative; both run from the kit folder."""
    flags = ["--fp16"] if names.precision == "fp16" else ["--int8", "--fp16"]
    return [
        shlex.join(["python3", names.builder, "--onnx", names.build_input, "--engine", names.engine,
                    "--precision", names.precision, "--workspace-gib", f"{workspace_gib:g}"]),
        shlex.join(["trtexec", f"--onnx={names.build_input}", f"--saveEngine={names.engine}", *flags,
                    f"--memPoolSize=workspace:{int(workspace_gib * 1024)}M"]),
    ]


def readme(job: TargetJob, names: TrtNames, commands: List[str], quant: Optional[Dict[str, Any]],
           calibration: List[str], ran: bool) -> str:
    i = job.input
    lines = [f"# {names.model} for NVIDIA TensorRT ({job.precision}, batch {names.batch})", "",
             f"- `{names.static}`: the canonical ONNX (opset {job.spec.opset}) at a static batch of {names.batch}"]
    if quant:
        lines.append(f"- `{names.qdq}`: int8 QDQ (ONNX Runtime, per-channel symmetric QInt8, "
                     f"{quant['calibrate_method']} calibration on {quant['calib_images_used']} images in "
                     f"{quant['calib_batches']} batches of {quant['calib_batch']}, bias float)")
    lines += [f"- `{names.builder}`: TensorRT 10's builder, and `--check` to compare one engine batch with "
              "ONNX Runtime (needs tensorrt-cu12 10.x and cuda-python)", "",
              *([*calibration, ""] if calibration else []),
              "Build the engine from this folder, on a machine with an NVIDIA GPU "
              "(pip install 'tensorrt-cu12>=10,<11' cuda-python):", "",
              f"    {commands[0]}", "", "or with trtexec:", "", f"    {commands[1]}", "",
              "Compare one batch of the engine with ONNX Runtime:", "",
              "    " + shlex.join(["python3", names.builder, "--onnx", names.build_input, "--engine", names.engine,
                                    "--check"]), "",
              f"Preprocessing: resize {i.resize_short()}, centre crop {i.size}, mean {i.mean}, std {i.std}, "
              f"{i.interpolation.value}; NCHW float32.", "",
              ("The engine was built and run here, and gated against the canonical ONNX." if ran else
               "What ran here: the ONNX files were checked with ONNX Runtime (static copy against the canonical "
               "model; int8 against fp32). TensorRT did not run here: no engine was built.")]
    return "\n".join(lines) + "\n"


class TensorrtTarget(Target):
    name = "tensorrt"
    options = TensorrtOptions
    tools = ("onnxruntime", "tensorrt", "tensorrt-cu12")
    calib_format = NPY_FORMAT

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        super().check_options(options, precision)
        if precision not in PRECISIONS:
            raise UserError(f"precision={precision}: TensorRT engines here are {' or '.join(PRECISIONS)}")
        q, batch = options["quant"], int(options["batch"])
        if str(q["method"]) not in OBSERVER_OF_METHOD:
            raise UserError(f"target.quant.method={q['method']}: choose one of {', '.join(OBSERVER_OF_METHOD)}")
        if precision == "int8" and int(q["calib_images"]) < batch:
            raise UserError(f"target.quant.calib_images={q['calib_images']}: calibration runs in whole batches of the "
                            f"static batch ({batch}); give at least {batch}")

    def prepare(self, job: TargetJob) -> Path:
        """``<model>_<batch>.onnx``: the canonical model at the engine's static batch."""
        names = trt_names(job)
        made = make_static(job.onnx_path, job.stage / names.static, names.batch, sorted({1, int(job.spec.batch)}))
        self._static_info = {"reshapes_patched": made["reshapes_patched"], "simplified": made["simplified"]}
        return job.stage / names.static

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        names, kit, opts = trt_names(job), job.stage, job.options
        shape = [names.batch, 3, job.input.size, job.input.size]
        checks = onnx_requirements(prepared, job.spec.opset, job.spec.input_name, shape)
        parity, diff = static_parity_check(job.onnx_path, prepared, names.batch, job.input.size, job.seed)
        checks.append(parity)
        info: Dict[str, Any] = {"batch": names.batch, "static_max_abs_diff": diff, "engine": names.engine,
                                **getattr(self, "_static_info", {})}
        quant = None
        if job.precision == "int8":
            quant, images = quantize_int8(job, prepared, kit / names.qdq)
            checks += qdq_checks(kit / names.qdq, job.spec.opset, job.spec.input_name, shape)
            cos_check, cos = int8_cosine_check(prepared, kit / names.qdq, images, job, int(opts["quant"]["check_images"]),
                                               float(opts["quant"]["min_cosine"]))
            checks.append(cos_check)
            info.update(quantization=quant, int8_min_cosine=cos,
                        calibration_method=f"onnxruntime quantize_static {quant['calibrate_method']}, symmetric QInt8 "
                                           "(the kit's QDQ model)")
        shutil.copyfile(BUILDER_SOURCE, kit / names.builder)
        commands = build_commands(names, float(opts["workspace_gib"]))
        package = builder_package()
        ran = package is not None and gpu_present()
        calibration = calibration_section(calibration_record(job, info.get("calibration_method")), job, self.name)
        (kit / names.readme).write_text(readme(job, names, commands, quant, calibration, ran))
        if ran:
            checks += run_builder(kit, names, float(opts["workspace_gib"]), float(opts["build_timeout_s"]))
        engine = kit / names.engine
        compiled = ran and engine.is_file()
        compiler = (f"tensorrt (found, {'NVIDIA GPU present' if gpu_present() else 'no NVIDIA GPU'})" if package
                    else "tensorrt (not installed)")
        info.update(compiler_ran=ran, run_from="the kit folder")
        return Built(files=kit_files(kit), primary=engine if compiled else prepared, compiled=compiled,
                     compiler=compiler, commands=commands, checks=checks, info=info)

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        """The engine on the GPU, run back with TensorRT, where one was built here; None otherwise."""
        if not built.compiled or built.primary.suffix != ".engine" or not gpu_present():
            return None
        from zoo.targets.trt_engine import EngineRunner

        runner = EngineRunner(built.primary)
        return lambda x: run_static(runner, x, runner.batch)

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        from zoo.targets.kit import describe_kit

        lines = describe_kit("TensorRT", built, job.stage)
        names = trt_names(job)
        lines.append(f"kit: {names.static}" + (f", {names.qdq}" if job.precision == "int8" else "")
                     + f", {names.builder}, {names.readme}")
        if "int8_min_cosine" in built.info:
            lines.append(f"int8 QDQ vs fp32: min cosine {built.info['int8_min_cosine']:.4f}")
        return lines
