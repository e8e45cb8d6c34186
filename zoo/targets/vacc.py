"""VastAI VACC: the vamc build kit for a static batch-1, opset-11 ONNX, compiled where vamc is on PATH.

The kit holds the target-ready ONNX, the vamc build yaml (the vendor's current schema for
``vamc compile``, or with ``schema: legacy`` the 2023 schema for ``vamc build``), the vdsp params json
the device uses to preprocess images (mean/std rounded to float16, as the device stores them) and,
for int8, the calibration images as JPEG files. Every kit file is re-read and checked here. The
model suite (under ``deploy_weights/``) only exists where vamc itself ran.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

from zoo.errors import UserError
from zoo.registry.schema import InputSpec
from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import Built, CalibFormat, Check, Target, TargetJob
from zoo.targets.kit import (KIT_README, Seq, command_line, copy_onnx, describe_kit, files_under, inside_kit_check,
                             kit_files, option_choice, require_batch_one, require_rgb_nchw, run_compiler, schema_check,
                             write_calibration_note)
from zoo.targets.device_scripts import readme_lines, script_checks, write_device_scripts
from zoo.targets.onnx_checks import onnx_requirements


@dataclass
class VaccOptions(ExportOptions):
    schema: str = "current"
    cluster_mode: int = 0
    calibrate_mode: str = "max"
    quantize_per_channel: bool = True
    calib_images: int = 50
    runtime_batch: int = 1
    compile_timeout_s: float = 7200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.at_least("target.calib_images", self.calib_images, 1, "give at least 1 calibration image")
        bounds.at_least("target.runtime_batch", self.runtime_batch, 1, "give a positive batch")
        bounds.above("target.compile_timeout_s", self.compile_timeout_s, "give seconds (> 0)")

TOOL = "vamc"
SCHEMAS = ("current", "legacy")
CALIBRATE_MODES = ("percentile", "max", "kl_divergence", "mse")
# The device's resize. vamc's Resize op (calibration) takes no interpolation key in the vendor's ResNeXt
# build yamls, and the vendor pairs it with BILINEAR_CV in every ResNeXt vdsp file, timm's bicubic
# checkpoints included (VastModelZOO cv/classification/resnext/build_in/); vdsp has no plain BICUBIC. So
# calibration and device both resize bilinearly with OpenCV, whatever the registry's interpolation.
RESIZE_TYPE = "BILINEAR_CV"
WORKSPACE = "./deploy_weights/"  # where vamc writes the suite, relative to the kit
CALIB_DIR = "calib"
CALIB_SUFFIX = "JPEG"  # the sampler matches file names by this suffix, case and all
JPEG_QUALITY = 95


def kit_name(job: TargetJob) -> str:
    return f"{job.weights.source}_{job.variant.name}_{job.precision}"


def vdsp_name(job: TargetJob) -> str:
    return f"{job.weights.source}-{job.variant.name}-vdsp_params.json"


def float16(x: float) -> float:
    """``x`` as the device stores it: the nearest float16, read back as a float."""
    return float(np.float16(x))


def input_shape(spec: InputSpec) -> List[int]:
    return [1, 3, spec.size, spec.size]


# --- the build yaml ----------------------------------------------------------------------------


def process_ops(spec: InputSpec) -> List[Dict[str, Any]]:
    """The calibration preprocessing, in vamc's op list (the vendor's own Resize is to a square)."""
    short = spec.resize_short()
    return [
        {"type": "DecodeImage"},
        {"type": "Resize", "size": [short, short]},
        {"type": "CenterCrop", "crop_size": [spec.size, spec.size]},
        {"type": "Normalize", "mean": [float(m) for m in spec.mean], "std": [float(s) for s in spec.std]},
        {"type": "ToTensor"},
    ]


def current_config(job: TargetJob, onnx_rel: str, n_calib: int) -> Dict[str, Any]:
    """The build yaml for ``vamc compile`` (the vendor's current schema)."""
    o = job.options
    backend: Dict[str, Any] = {"type": "tvm_vacc", "dtype": job.precision,
                               "compile": {"cluster_mode": int(o["cluster_mode"])}}
    if job.precision == "int8":
        backend["quantize"] = {"calibrate_mode": str(o["calibrate_mode"]),
                               "quantize_per_channel": bool(o["quantize_per_channel"])}
    cfg: Dict[str, Any] = {
        "name": kit_name(job),
        "frontend": {"shape": {job.spec.input_name: input_shape(job.input)}, "type": "onnx",
                     "checkpoint": onnx_rel, "dtype": "fp32"},
        "backend": backend,
    }
    if needs_softmax(job):
        cfg["graph"] = {"extra_ops": {"type": "softmax"}}
    if job.precision == "int8":
        cfg["dataset"] = {"type": "tvm", "path": f"./{CALIB_DIR}",
                          "sampler": {"suffix": CALIB_SUFFIX, "get_data_num": n_calib},
                          "process_ops": process_ops(job.input)}
    cfg["workspace"] = {"path": WORKSPACE}
    return cfg


def legacy_config(job: TargetJob, onnx_rel: str, n_calib: int) -> Dict[str, Any]:
    """The build yaml for ``vamc build`` (the 2023 schema)."""
    o = job.options
    engine: Dict[str, Any] = {"type": "vacc", "common": {"do_quantization": job.precision == "int8"}}
    if needs_softmax(job):
        engine["add_extra_ops_to_graph"] = {"type": "softmax"}
    if job.precision == "int8":
        engine["calibration"] = {"quant_mode": str(o["calibrate_mode"]), "per_channel": bool(o["quantize_per_channel"])}
    cfg: Dict[str, Any] = {
        "model": {"name": kit_name(job), "inputs": {job.spec.input_name: input_shape(job.input)},
                  "checkpoint": onnx_rel},
        "engine": engine,
    }
    if job.precision == "int8":
        cfg["dataset"] = {"path": f"./{CALIB_DIR}", "sampler": {"suffix": CALIB_SUFFIX, "get_data_num": n_calib},
                          "transform_ops": process_ops(job.input)}
    cfg["workspace"] = {"work_dir": WORKSPACE, "enable_ir": False, "save_log": True}
    return cfg


def needs_softmax(job: TargetJob) -> bool:
    """The vendor appends a softmax on the device; a source that already outputs probabilities has one."""
    return job.weights.output.value == "logits"


_OPS_SCHEMA = Seq([
    {"type": str},
    {"type": str, "size": [int]},
    {"type": str, "crop_size": [int]},
    {"type": str, "mean": [float], "std": [float]},
    {"type": str},
])


def config_schema(schema: str, int8: bool, softmax: bool) -> Dict[str, Any]:
    """The vendor's key set and value types for one schema, precision and output kind."""
    if schema == "current":
        s: Dict[str, Any] = {
            "name": str,
            "frontend": {"shape": {str: [int]}, "type": str, "checkpoint": str, "dtype": str},
            "backend": {"type": str, "dtype": str, "compile": {"cluster_mode": int},
                        "quantize": {"calibrate_mode": str, "quantize_per_channel": bool}},
            "graph": {"extra_ops": {"type": str}},
            "dataset": {"type": str, "path": str, "sampler": {"suffix": str, "get_data_num": int},
                        "process_ops": _OPS_SCHEMA},
            "workspace": {"path": str},
        }
        if not int8:
            del s["backend"]["quantize"], s["dataset"]
        if not softmax:
            del s["graph"]
        return s
    s = {
        "model": {"name": str, "inputs": {str: [int]}, "checkpoint": str},
        "engine": {"type": str, "common": {"do_quantization": bool}, "add_extra_ops_to_graph": {"type": str},
                   "calibration": {"quant_mode": str, "per_channel": bool}},
        "dataset": {"path": str, "sampler": {"suffix": str, "get_data_num": int}, "transform_ops": _OPS_SCHEMA},
        "workspace": {"work_dir": str, "enable_ir": bool, "save_log": bool},
    }
    if not int8:
        del s["engine"]["calibration"], s["dataset"]
    if not softmax:
        del s["engine"]["add_extra_ops_to_graph"]
    return s


def _with_input_name(schema: Dict[str, Any], name: str) -> Dict[str, Any]:
    """Put the network's input name where the schema has the placeholder key ``str``."""
    out = {}
    for k, v in schema.items():
        key = name if k is str else k
        out[key] = _with_input_name(v, name) if isinstance(v, dict) else v
    return out


# --- vdsp params -------------------------------------------------------------------------------


def vdsp_params(spec: InputSpec) -> Dict[str, Any]:
    """The device-side preprocessing: resize, centre crop, /255, minus mean, over std (float16 constants)."""
    short = spec.resize_short()
    crop = (short - spec.size) // 2
    return {
        "OpType": "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR",
        "OpConfig": {
            "IimageFormat": "RGB_PLANAR",
            "IimageWidth": short, "IimageHeight": short, "IimageWidthPitch": short, "IimageHeightPitch": short,
            "ResizeWidth": short, "ResizeHeight": short,
            "OimageWidth": spec.size, "OimageHeight": spec.size,
            "CropX": crop, "CropY": crop,
            "Mean": [float16(m) for m in spec.mean], "Std": [float16(s) for s in spec.std],
            "NormaType": "DIV255_MINUSMEAN_DIVSTD",
            "ColorCvtCode": "NO_CHANGE",
            "ResizeType": RESIZE_TYPE,
        },
    }


def vdsp_checks(path: Path, spec: InputSpec) -> List[Check]:
    try:
        cfg = json.loads(path.read_text())["OpConfig"]
    except (ValueError, KeyError) as e:
        return [Check("vdsp params parse", False, f"{path.name}: {e}")]
    checks = [Check("vdsp params parse", True, path.name)]
    values = list(cfg["Mean"]) + list(cfg["Std"])
    representable = all(float16(v) == v for v in values)
    checks.append(Check("vdsp Mean/Std are float16 values", representable, f"Mean {cfg['Mean']}, Std {cfg['Std']}"))
    want = ([float16(m) for m in spec.mean], [float16(s) for s in spec.std])
    checks.append(Check("vdsp Mean/Std are the registry's, rounded to float16", (cfg["Mean"], cfg["Std"]) == want,
                        f"expected Mean {want[0]}, Std {want[1]}"))
    crop_ok = (cfg["OimageWidth"] == spec.size and cfg["ResizeWidth"] == spec.resize_short()
               and cfg["CropX"] == cfg["CropY"] == (cfg["ResizeWidth"] - cfg["OimageWidth"]) // 2)
    checks.append(Check("vdsp resize/crop match the registry", crop_ok,
                        f"resize {cfg['ResizeWidth']}, crop {cfg['OimageWidth']} at ({cfg['CropX']}, {cfg['CropY']})"))
    checks.append(Check("vdsp ResizeType is the calibration's resize (vamc Resize: OpenCV bilinear)",
                        cfg.get("ResizeType") == RESIZE_TYPE, f"ResizeType {cfg.get('ResizeType')}"))
    return checks


def resize_note(spec: InputSpec) -> Optional[str]:
    """What a device engineer should know when the registry's resampling is not the device's."""
    if spec.interpolation.value == "bilinear":
        return None
    return (f"the registry's preprocessing resizes {spec.interpolation.value}; vamc's calibration and the device "
            f"({RESIZE_TYPE}) resize bilinearly, as the vendor's own ResNeXt kits do: top-1 on the device may differ "
            f"slightly from the published figure")


# --- calibration images --------------------------------------------------------------------------


def save_calibration_jpeg(img: Any, path: Path) -> None:
    """One image as the RGB JPEG file the vamc sampler picks up, at its own size."""
    # Full-resolution chroma (4:4:4): calibration statistics should not pay for colour subsampling.
    img.convert("RGB").save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def write_calibration(images: Sequence[Any], folder: Path) -> List[Tuple[Path, Tuple[int, int]]]:
    """Each image as a JPEG file the vamc sampler picks up; returns (file, original size) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, img in enumerate(images):
        path = folder / f"{i:05d}.{CALIB_SUFFIX}"
        save_calibration_jpeg(img, path)
        written.append((path, img.size))
    return written


def calibration_checks(written: List[Tuple[Path, Tuple[int, int]]], folder: Path, expected: int) -> List[Check]:
    from PIL import Image

    on_disk = sorted(folder.glob(f"*.{CALIB_SUFFIX}"))
    checks = [Check("calibration image count", len(on_disk) == expected == len(written),
                    f"{len(on_disk)} .{CALIB_SUFFIX} files, expected {expected}")]
    bad = []
    for path, size in written:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.size != size or im.mode != "RGB":
                bad.append(f"{path.name}: {im.format} {im.mode} {im.size}, expected JPEG RGB {size}")
    checks.append(Check("calibration images are RGB JPEG at their source size", not bad,
                        "; ".join(bad[:3]) if bad else f"{len(written)} files"))
    return checks


# --- checks on the re-read build yaml -------------------------------------------------------------


def config_checks(path: Path, job: TargetJob, onnx_rel: str, n_calib: int) -> List[Check]:
    """The yaml re-parses, has the vendor's key set and types, and its paths and values are this kit's."""
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        return [Check("vamc yaml parses", False, str(e).splitlines()[0])]
    schema = str(job.options["schema"])
    int8 = job.precision == "int8"
    expected = _with_input_name(config_schema(schema, int8, needs_softmax(job)), job.spec.input_name)
    checks = [Check("vamc yaml parses", True, path.name),
              schema_check(f"vamc yaml has the {schema} schema's keys and types", cfg, expected)]
    if not checks[-1].passed:
        return checks
    kit = path.parent
    model = cfg["frontend"] if schema == "current" else cfg["model"]
    shape = model["shape"] if schema == "current" else model["inputs"]
    checks.append(Check("vamc yaml input shape", shape == {job.spec.input_name: input_shape(job.input)}, str(shape)))
    checks.append(inside_kit_check("vamc yaml checkpoint is the kit's ONNX", kit, model["checkpoint"]))
    if int8:
        data = cfg["dataset"]
        checks.append(inside_kit_check("vamc yaml dataset path is the kit's calibration folder", kit, data["path"],
                                       is_dir=True))
        found = len(list((kit / data["path"]).glob(f"*.{data['sampler']['suffix']}")))
        checks.append(Check("vamc yaml sampler count matches the calibration files",
                            data["sampler"]["get_data_num"] == found == n_calib,
                            f"get_data_num {data['sampler']['get_data_num']}, {found} files"))
        ops = data["process_ops" if schema == "current" else "transform_ops"]
        checks.append(Check("vamc yaml preprocessing is the registry's", ops == process_ops(job.input), str(ops)))
    return checks


# --- the kit as a whole -------------------------------------------------------------------------


def write_kit(job: TargetJob, prepared: Path) -> Tuple[Path, Path, List[Tuple[Path, Tuple[int, int]]]]:
    """Write the calibration images (int8), the build yaml and the vdsp params beside the ONNX."""
    kit = job.stage
    written: List[Tuple[Path, Tuple[int, int]]] = []
    if job.precision == "int8":
        written = write_calibration(job.calibration(int(job.options["calib_images"])), kit / CALIB_DIR)
    build = current_config if job.options["schema"] == "current" else legacy_config
    cfg_path = kit / f"{kit_name(job)}.yaml"
    cfg_path.write_text(yaml.safe_dump(build(job, f"./{prepared.name}", len(written)), sort_keys=False))
    vdsp_path = kit / vdsp_name(job)
    vdsp_path.write_text(json.dumps(vdsp_params(job.input), indent=2) + "\n")
    return cfg_path, vdsp_path, written


def kit_checks(job: TargetJob, prepared: Path, cfg_path: Path, vdsp_path: Path,
               written: List[Tuple[Path, Tuple[int, int]]]) -> List[Check]:
    o = job.options
    checks = onnx_requirements(prepared, opset=int(o["opset"]), input_name=str(o["input_name"]),
                               shape=input_shape(job.input))
    checks += config_checks(cfg_path, job, f"./{prepared.name}", len(written))
    checks += vdsp_checks(vdsp_path, job.input)
    if job.precision == "int8":
        checks += calibration_checks(written, job.stage / CALIB_DIR, int(o["calib_images"]))
    return checks


def write_readme(job: TargetJob, cfg_path: Path, vdsp_path: Path, prepared: Path) -> Path:
    """The kit's README: the build command, the vendor's speed test, the device-side scripts."""
    lines = [f"# {kit_name(job)}: VastAI VACC build kit ({job.precision})", "",
             "Built by resnext-zoo. The manifest beside this kit says whether vamc ran where it was built.", "",
             "## Build (from this folder, with VastAI's vamc)", "",
             f"    {command_line([TOOL, 'compile' if job.options['schema'] == 'current' else 'build', cfg_path.name])}",
             "", f"vamc writes the model suite under `{WORKSPACE}{kit_name(job)}/`. The vendor's own speed test:", "",
             f"    {device_run(job, vdsp_path, None)}", "",
             *readme_lines("vaststreamx on the device", prepared.name)]
    note = resize_note(job.input)
    if note:
        lines += ["", f"Note: {note}."]
    path = job.stage / KIT_README
    path.write_text("\n".join(lines) + "\n")
    return path


def default_suite(job: TargetJob) -> str:
    """The model suite's prefix in the vendor's usual layout, before vamc has run."""
    return f"deploy_weights/{kit_name(job)}/mod"


def device_run(job: TargetJob, vdsp_path: Path, suite_prefix: Optional[Path]) -> str:
    """The vendor's runner command; before vamc ran, the suite path is the vendor's usual layout."""
    suite = suite_prefix.as_posix() if suite_prefix else default_suite(job)
    return command_line(["vamp", "-m", suite, "--vdsp_params", vdsp_path.name, "-i", "8", "-p", "1",
                         "-b", str(job.options["runtime_batch"])])


# --- the target ------------------------------------------------------------------------------------


class VaccTarget(Target):
    name = "vacc"
    options = VaccOptions
    calib_format = CalibFormat(
        "jpeg", CALIB_DIR, f".{CALIB_SUFFIX}", False, True,
        f"RGB JPEG at source size, decoded by vamc itself (sampler suffix {CALIB_SUFFIX})",
        "vamc yaml: dataset.path {data}  sampler.get_data_num {n}")

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        super().check_options(options, precision)
        require_batch_one(options, TOOL)
        option_choice(options, "schema", SCHEMAS)
        option_choice(options, "calibrate_mode", CALIBRATE_MODES)
        if precision not in options["precisions"]:
            raise UserError(f"precision={precision}: vamc builds {', '.join(options['precisions'])}")
        if precision == "int8" and int(options["calib_images"]) < 1:
            raise UserError(f"target.calib_images={options['calib_images']}: int8 needs at least 1 calibration image")

    def prepare(self, job: TargetJob) -> Path:
        """The canonical ONNX (already opset 11, static batch 1, input named as vamc expects), in the kit."""
        return copy_onnx(job.onnx_path, job.stage / f"{job.variant.name}.onnx")

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        require_rgb_nchw(job.input, TOOL)
        kit, o = job.stage, job.options
        cfg_path, vdsp_path, written = write_kit(job, prepared)
        method = f"vamc calibrate_mode={o['calibrate_mode']}, on the kit's calibration images"
        write_calibration_note(job, self.name, method)  # int8: where the kit's calibration images came from
        checks = kit_checks(job, prepared, cfg_path, vdsp_path, written)
        device = write_device_scripts(job, self.name, "vsx", default_suite(job),
                                      ["--vdsp_params", f"$KIT/{vdsp_path.name}"])
        checks += script_checks(device)
        write_readme(job, cfg_path, vdsp_path, prepared)
        args = ["compile" if o["schema"] == "current" else "build", cfg_path.name]
        run = run_compiler(TOOL, [(args, "vamc.log")], kit, float(o["compile_timeout_s"]), checks)
        checks += run.checks
        compiled, primary, suite = False, cfg_path, []
        if run.ok:
            suite = files_under(kit / WORKSPACE)
            checks.append(Check("vamc wrote a model suite", bool(suite),
                                f"{len(suite)} files under {WORKSPACE}" if suite else f"nothing under {WORKSPACE}"))
            if suite:
                compiled, primary = True, _suite_primary(suite)
        info: Dict[str, Any] = {
            "schema": str(o["schema"]), "config": cfg_path.name, "vdsp_params": vdsp_path.name,
            "calibration_images": len(written), "extra_softmax": needs_softmax(job), "run_from": "the kit folder",
            "compiler_ran": run.ran, "compiler_version": run.version, "suite": [p.relative_to(kit).as_posix() for p in suite],
            "device_run": device_run(job, vdsp_path, primary.with_suffix("").relative_to(kit) if compiled else None),
        }
        if job.precision == "int8":
            info["calibration_method"] = method
        if resize_note(job.input):
            info["resize_note"] = resize_note(job.input)
        return Built(files=kit_files(kit), primary=primary, compiled=compiled, compiler=run.label,
                     commands=[command_line([TOOL, *args])], checks=checks, info=info)

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        note = built.info.get("resize_note")
        return describe_kit(TOOL, built, job.stage) + ([f"note: {note}"] if note else [])


def _suite_primary(suite: List[Path]) -> Path:
    """The suite's compiled library where there is one (TVM style .so/.json/.params), else its first file."""
    libs = [p for p in suite if p.suffix == ".so"]
    return (libs or suite)[0]

