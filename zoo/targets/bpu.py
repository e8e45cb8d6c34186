"""Horizon BPU (RDK boards): the hb_mapper build kit for an int8 .bin, compiled where hb_mapper is on PATH.

The kit holds the target-ready ONNX (opset 11, static 1x3xHxW, input ``data``), the hb_mapper config
yaml in the schema of D-Robotics' model zoo (normalisation folded into the model as mean*255 and
1/(std*255)), and the calibration data in hb_mapper's format: each image resized and centre-cropped
as the registry says, RGB, CHW, float32 in 0-255 (not normalised), one raw ``.rgbchw`` file per image.
Every kit file is re-read and checked here; ``hb_mapper checker`` and ``makertbin`` run only where
hb_mapper is installed, and only they write the .bin.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import yaml

from zoo.errors import UserError
from zoo.preprocess import resize_crop
from zoo.registry.schema import InputSpec
from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import Built, CalibFormat, Check, Target, TargetJob
from zoo.targets.kit import (KIT_README, command_line, copy_onnx, describe_kit, files_under, inside_kit_check,
                             kit_files, option_choice, require_batch_one, require_rgb_nchw, run_compiler, schema_check,
                             write_calibration_note)
from zoo.targets.device_scripts import readme_lines, script_checks, write_device_scripts
from zoo.targets.onnx_checks import onnx_requirements


@dataclass
class BpuOptions(ExportOptions):
    march: str = "bayes-e"
    input_type_rt: str = "nv12"
    input_layout_rt: str = "NHWC"
    compile_mode: str = "latency"
    optimize_level: str = "O3"
    calib_images: int = 100
    calibration_type: str = "default"
    compile_timeout_s: float = 7200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.compile_timeout_s", self.compile_timeout_s, "give seconds (> 0)")

TOOL = "hb_mapper"
MARCHES = ("bayes-e", "bayes", "bernoulli2")  # RDK X5, RDK Ultra, RDK X3
INPUT_TYPES_RT = ("nv12", "yuv444", "rgb", "bgr")
LAYOUTS_RT = ("NHWC", "NCHW")
COMPILE_MODES = ("latency", "bandwidth", "balance")
OPTIMIZE_LEVELS = ("O0", "O1", "O2", "O3")
CALIBRATION_TYPES = ("default", "mix", "kl", "max")
CALIB_DIR = "calibration_data_rgb_f32"
CALIB_SUFFIX = ".rgbchw"
TOLERANCE = 1e-6  # on mean*255 and scale*std*255 as written in the yaml's decimal text


def output_prefix(job: TargetJob) -> str:
    size = job.input.size
    return f"{job.variant.name}_{size}x{size}_{job.options['input_type_rt']}"


def shape_text(spec: InputSpec) -> str:
    return f"1x3x{spec.size}x{spec.size}"


def mean_values(spec: InputSpec) -> List[float]:
    return [m * 255 for m in spec.mean]


def scale_values(spec: InputSpec) -> List[float]:
    return [1.0 / (s * 255) for s in spec.std]


def number_list(values: Sequence[float]) -> str:
    """hb_mapper's space-separated numbers; 8 significant digits keep each within 1e-7 relative."""
    return " ".join(f"{v:.8g}" for v in values)


# --- the config yaml -----------------------------------------------------------------------------


def mapper_config(job: TargetJob, onnx_rel: str) -> Dict[str, Any]:
    o = job.options
    prefix = output_prefix(job)
    inputs: Dict[str, Any] = {"input_name": job.spec.input_name, "input_type_rt": str(o["input_type_rt"])}
    if o["input_type_rt"] in ("rgb", "bgr"):
        inputs["input_layout_rt"] = str(o["input_layout_rt"])  # packed image types need their layout
    inputs.update({
        "input_type_train": "rgb", "input_layout_train": "NCHW", "input_shape": shape_text(job.input),
        "norm_type": "data_mean_and_scale",
        "mean_value": number_list(mean_values(job.input)), "scale_value": number_list(scale_values(job.input)),
    })
    return {
        "model_parameters": {"onnx_model": onnx_rel, "march": str(o["march"]), "layer_out_dump": False,
                             "working_dir": prefix, "output_model_file_prefix": prefix},
        "input_parameters": inputs,
        "calibration_parameters": {"cal_data_dir": f"./{CALIB_DIR}", "cal_data_type": "float32",
                                   "calibration_type": str(o["calibration_type"])},
        "compiler_parameters": {"compile_mode": str(o["compile_mode"]), "debug": False,
                                "optimize_level": str(o["optimize_level"])},
    }


def config_schema(packed_rt: bool) -> Dict[str, Any]:
    inputs: Dict[str, Any] = {"input_name": str, "input_type_rt": str, "input_layout_rt": str,
                              "input_type_train": str, "input_layout_train": str, "input_shape": str,
                              "norm_type": str, "mean_value": str, "scale_value": str}
    if not packed_rt:
        del inputs["input_layout_rt"]
    return {
        "model_parameters": {"onnx_model": str, "march": str, "layer_out_dump": bool, "working_dir": str,
                             "output_model_file_prefix": str},
        "input_parameters": inputs,
        "calibration_parameters": {"cal_data_dir": str, "cal_data_type": str, "calibration_type": str},
        "compiler_parameters": {"compile_mode": str, "debug": bool, "optimize_level": str},
    }


def _numbers(text: str) -> List[float]:
    return [float(x) for x in text.split()]


def config_checks(path: Path, job: TargetJob) -> List[Check]:
    """The yaml re-parses, has hb_mapper's key set and types, and its numbers and paths are this kit's."""
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [Check("hb_mapper yaml parses", False, str(e).splitlines()[0])]
    checks = [Check("hb_mapper yaml parses", True, path.name),
              schema_check("hb_mapper yaml has the vendor's keys and types", cfg,
                           config_schema(job.options["input_type_rt"] in ("rgb", "bgr")))]
    if not checks[-1].passed:
        return checks
    kit, inp = path.parent, cfg["input_parameters"]
    std, mean = job.input.std, job.input.mean
    scale, means = _numbers(inp["scale_value"]), _numbers(inp["mean_value"])
    checks.append(Check("hb_mapper scale_value * std * 255 == 1", len(scale) == len(std) and all(
        abs(s * d * 255 - 1) <= TOLERANCE for s, d in zip(scale, std)), f"scale_value {inp['scale_value']}, std {std}"))
    checks.append(Check("hb_mapper mean_value == mean * 255", len(means) == len(mean) and all(
        abs(v - m * 255) <= TOLERANCE for v, m in zip(means, mean)), f"mean_value {inp['mean_value']}, mean {mean}"))
    checks.append(Check("hb_mapper input name and shape",
                        inp["input_name"] == job.spec.input_name and inp["input_shape"] == shape_text(job.input),
                        f"{inp['input_name']} {inp['input_shape']}"))
    checks.append(inside_kit_check("hb_mapper onnx_model is the kit's ONNX", kit,
                                   cfg["model_parameters"]["onnx_model"]))
    checks.append(inside_kit_check("hb_mapper cal_data_dir is the kit's calibration folder", kit,
                                   cfg["calibration_parameters"]["cal_data_dir"], is_dir=True))
    return checks


# --- calibration data ------------------------------------------------------------------------------


def calibration_array(img: Any, spec: InputSpec) -> np.ndarray:
    """hb_mapper's float32 calibration layout: resized and cropped, RGB, CHW, 0-255 (mean/scale are in the model)."""
    return np.ascontiguousarray(np.asarray(resize_crop(img, spec), dtype=np.float32).transpose(2, 0, 1))


def write_rgbchw(img: Any, spec: InputSpec, path: Path) -> None:
    """One image as a raw ``.rgbchw`` file: ``calibration_array`` bytes, no header."""
    calibration_array(img, spec).tofile(path)


def write_calibration(images: Sequence[Any], spec: InputSpec, folder: Path) -> List[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        path = folder / f"{i:04d}{CALIB_SUFFIX}"
        write_rgbchw(img, spec, path)
        paths.append(path)
    return paths


def calibration_checks(paths: List[Path], images: Sequence[Any], spec: InputSpec, folder: Path,
                       expected: int) -> List[Check]:
    nbytes = 3 * spec.size * spec.size * 4
    on_disk = sorted(folder.glob(f"*{CALIB_SUFFIX}"))
    checks = [Check("calibration file count", len(on_disk) == expected == len(paths),
                    f"{len(on_disk)} {CALIB_SUFFIX} files, expected {expected}")]
    wrong_size = [p.name for p in on_disk if p.stat().st_size != nbytes]
    checks.append(Check(f"calibration files are 3x{spec.size}x{spec.size} float32 ({nbytes} bytes)", not wrong_size,
                        f"wrong size: {', '.join(wrong_size[:3])}" if wrong_size else f"{len(on_disk)} files"))
    if wrong_size:
        return checks
    lo, hi, mismatched = np.inf, -np.inf, []
    for path, img in zip(paths, images):
        back = np.fromfile(path, dtype=np.float32)
        lo, hi = min(lo, float(back.min())), max(hi, float(back.max()))
        # Read back against a fresh preprocessing of the image: catches a layout or dtype slip.
        if not np.array_equal(back.reshape(3, spec.size, spec.size), calibration_array(img, spec)):
            mismatched.append(path.name)
    # Within 0-255, and not all within 0-1: hb_mapper applies mean/scale itself, so scaled data is wrong.
    checks.append(Check("calibration values are 0-255 (not normalised)", 0 <= lo and 1 < hi <= 255,
                        f"min {lo:g}, max {hi:g}"))
    checks.append(Check("calibration files read back as their images' resize/crop", not mismatched,
                        f"differ: {', '.join(mismatched[:3])}" if mismatched else f"{len(paths)} files match"))
    return checks


def mapper_steps(job: TargetJob, prepared: Path, cfg_path: Path) -> List[Tuple[List[str], str]]:
    """hb_mapper's two steps, as (arguments, log name): check the ONNX, then build the .bin."""
    return [(["checker", "--model-type", "onnx", "--model", f"./{prepared.name}", "--march", str(job.options["march"])],
             "hb_mapper_checker.out"),
            (["makertbin", "--config", cfg_path.name, "--model-type", "onnx"], "hb_mapper_makertbin.out")]


README = KIT_README


def vendor_results() -> Dict[str, List[Any]]:
    """The variants the vendor has published BPU results for (the registry's ``deployments`` of target bpu,
    each with its document): the ones shown to compile for a board."""
    from zoo.registry.loader import load_registry

    reg = load_registry()
    return {v.name: [d for d in v.deployments if d.target == "bpu"]
            for v in reg.variants.values() if any(d.target == "bpu" for d in v.deployments)}


def write_readme(job: TargetJob, steps: List[Tuple[List[str], str]], prefix: str, onnx_name: str) -> Path:
    """The kit's README: the build steps, where the .bin lands, the device-side command, and whether the
    vendor has published this variant for the BPU (larger ones may not compile or fit)."""
    from zoo.registry.loader import load_registry

    published = vendor_results()
    docs = load_registry().documents
    lines = [f"# {job.variant.name} ({job.weights.source}/{job.weights.tag}): Horizon BPU int8 build kit", "",
             "Built by resnext-zoo. The manifest beside this kit says whether hb_mapper ran where it was built.", "",
             "## Build (from this folder, with Horizon's OpenExplorer toolchain)", ""]
    lines += [f"    {command_line([TOOL, *args])}" for args, _ in steps]
    lines += ["", f"`makertbin` writes `{prefix}/{prefix}.bin`. On the board, the vendor's own speed test:", "",
              f"    {command_line(['hrt_model_exec', 'perf', '--model_file', f'{prefix}/{prefix}.bin'])}", "",
              *readme_lines("hbm_runtime on the board", onnx_name), "",
              "## Variants the vendor has published for the BPU", ""]
    for name, results in published.items():
        for d in results:
            doc = docs[d.provenance.doc]
            figures = ", ".join(f for f in (f"top-1 {d.top1}" if d.top1 is not None else "",
                                            f"{d.fps} FPS" if d.fps is not None else "") if f)
            weights = f", {d.weights_source} weights" if d.weights_source else ""
            lines.append(f"- {name}: {d.device or 'BPU'}, {d.precision}{', ' + figures if figures else ''}{weights} "
                         f"({doc.title}, {doc.url}; table \"{d.provenance.table}\")")
    if job.variant.name not in published:
        lines += ["", f"**{job.variant.name} is not among them.** Nobody has shown it to compile for a board: "
                  f"hb_mapper may reject it, or the .bin may not fit the board's memory "
                  f"({job.variant.size.params / 1e6 if job.variant.size else 0:.1f}M parameters)."]
    path = job.stage / README
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the target ------------------------------------------------------------------------------------


class BpuTarget(Target):
    name = "bpu"
    options = BpuOptions
    # No filelist: hb_mapper reads every file in cal_data_dir as calibration data.
    calib_format = CalibFormat(
        "rgbchw", CALIB_DIR, CALIB_SUFFIX, True, False,
        "raw float32 RGB CHW, 0-255 (not normalised), resized and cropped per the InputSpec",
        "hb_mapper yaml: calibration_parameters.cal_data_dir {data}")

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        super().check_options(options, precision)
        require_batch_one(options, TOOL)
        option_choice(options, "march", MARCHES)
        option_choice(options, "input_type_rt", INPUT_TYPES_RT)
        if options["input_type_rt"] in ("rgb", "bgr"):
            option_choice(options, "input_layout_rt", LAYOUTS_RT)
        option_choice(options, "compile_mode", COMPILE_MODES)
        option_choice(options, "optimize_level", OPTIMIZE_LEVELS)
        option_choice(options, "calibration_type", CALIBRATION_TYPES)
        if int(options["calib_images"]) < 1:
            raise UserError(f"target.calib_images={options['calib_images']}: hb_mapper needs calibration images "
                            f"(Horizon recommends 100-300)")

    def prepare(self, job: TargetJob) -> Path:
        """The canonical ONNX (already opset 11, static 1x3xHxW, input ``data``), in the kit."""
        return copy_onnx(job.onnx_path, job.stage / f"{job.variant.name}.onnx")

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        require_rgb_nchw(job.input, TOOL)
        kit, o = job.stage, job.options
        images = job.calibration(int(o["calib_images"]))
        paths = write_calibration(images, job.input, kit / CALIB_DIR)
        method = f"hb_mapper calibration_type={o['calibration_type']}, on the kit's calibration files"
        write_calibration_note(job, self.name, method)  # where the kit's calibration files came from, beside them
        cfg_path = kit / f"{job.variant.name}_config.yaml"
        cfg_path.write_text(yaml.safe_dump(mapper_config(job, f"./{prepared.name}"), sort_keys=False))
        checks = onnx_requirements(prepared, opset=int(o["opset"]), input_name=str(o["input_name"]),
                                   shape=[1, 3, job.input.size, job.input.size])
        checks += config_checks(cfg_path, job)
        checks += calibration_checks(paths, images, job.input, kit / CALIB_DIR, int(o["calib_images"]))

        steps = mapper_steps(job, prepared, cfg_path)
        prefix = output_prefix(job)
        device = write_device_scripts(job, self.name, "hbm", f"{prefix}/{prefix}.bin",
                                      ["--input_type", str(o["input_type_rt"])])
        checks += script_checks(device)
        write_readme(job, steps, prefix, prepared.name)
        run = run_compiler(TOOL, steps, kit, float(o["compile_timeout_s"]), checks)
        checks += run.checks
        model = kit / prefix / f"{prefix}.bin"
        if run.ok:
            checks.append(Check(f"hb_mapper wrote {prefix}.bin", model.is_file(),
                                f"{model.relative_to(kit).as_posix()} {'exists' if model.is_file() else 'missing'}"))
        compiled = run.ok and model.is_file()
        info: Dict[str, Any] = {
            "config": cfg_path.name, "march": str(o["march"]), "calibration_files": len(paths),
            "run_from": "the kit folder", "compiler_ran": run.ran, "compiler_version": run.version,
            "outputs": [p.relative_to(kit).as_posix() for p in files_under(kit / prefix)] if compiled else [],
            "device_run": command_line(["hrt_model_exec", "perf", "--model_file", f"{prefix}/{prefix}.bin"]),
            "calibration_method": method,
        }
        return Built(files=kit_files(kit), primary=model if compiled else cfg_path, compiled=compiled,
                     compiler=run.label, commands=[command_line([TOOL, *args]) for args, _ in steps], checks=checks,
                     info=info)

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        return describe_kit(TOOL, built, job.stage)
