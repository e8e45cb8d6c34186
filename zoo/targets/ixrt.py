"""Iluvatar CoreX ixRT: the build kit of DeepSparkInference's ResNeXt entries, and the engine where it builds.

The kit holds what the vendor's scripts expect: ``<model>_sim.onnx`` (opset 13, dynamic batch,
simplified), its static-batch copy ``<model>_<batch>.onnx``, the bash ``<MODEL>_CONFIG`` they source,
for int8 an ONNX Runtime QDQ model (per-channel symmetric QInt8, bias left in float), and
``build_engine.py`` (ixRT's TensorRT-compatible builder API). Each file is checked here with ONNX
Runtime and bash. The engine itself is built only where the ixRT SDK and an Iluvatar device are
present, never with NVIDIA's TensorRT (its engines are a different artifact); elsewhere the kit says
the exact commands, and no engine file is written.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from zoo.converters.onnx_canonical import PROTOBUF_LIMIT, external_data_name
from zoo.errors import UserError
from zoo.ort_session import runner as ort_runner
from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import NPY_FORMAT, Built, Check, Runner, Target, TargetJob, run_static
from zoo.targets.onnx_checks import RESNEXT_OPS, onnx_requirements
from zoo.targets.device_scripts import script_checks
from zoo.targets.ixrt_device import readme_lines, script_names, write_device_scripts
from zoo.targets.kit import KIT_README, calibration_record, calibration_section, kit_files


@dataclass
class IxrtQuantOptions:
    seed: int = 42
    calib_images: int = 96
    disable_quant_list: List[str] = field(default_factory=list)
    method: str = "Entropy"
    check_images: int = 8
    min_cosine: float = 0.99

    def __post_init__(self) -> None:
        for key in ("calib_images", "check_images"):
            bounds.at_least(f"target.quant.{key}", getattr(self, key), 1, "must be a positive integer")
        if not -1 <= self.min_cosine <= 1:
            raise UserError(f"target.quant.min_cosine={self.min_cosine}: give a cosine from -1 to 1")


@dataclass
class IxrtOptions(ExportOptions):
    quant: IxrtQuantOptions = field(default_factory=IxrtQuantOptions)
    workspace_gib: float = 4.0
    build_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.workspace_gib", self.workspace_gib, "must be a positive number of GiB")
        bounds.above("target.build_timeout_s", self.build_timeout_s, "give seconds (> 0)")

# The vendor's quantiser (ixrt_common/quant.py) maps its --observer onto ONNX Runtime's calibration
# method; the CONFIG names the one the kit's QDQ model was calibrated with, in the vendor's words.
OBSERVER_OF_METHOD = {"MinMax": "minmax", "Entropy": "entropy", "Percentile": "percentile"}
PRECISIONS = ("fp16", "int8")
# The vendor's CONFIG keys, in the order its files list them.
CONFIG_KEYS = ("IMGSIZE", "MODEL_NAME", "ORIGINE_MODEL", "QUANT_OBSERVER", "QUANT_BATCHSIZE", "QUANT_STEP",
               "QUANT_SEED", "DISABLE_QUANT_LIST", "QUANT_EXIST_ONNX")
ENGINE_PRECISION = {"fp16": "float16", "int8": "int8"}  # the vendor's engine names say float16
BUILDER_SOURCE = Path(__file__).with_name("ixrt_engine.py")
QDQ_OPS = RESNEXT_OPS | {"QuantizeLinear", "DequantizeLinear"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class KitNames:
    """File names inside the kit, as the vendor's scripts spell them."""

    model: str
    batch: int
    precision: str

    @property
    def sim(self) -> str:
        return f"{self.model}_sim.onnx"

    @property
    def static(self) -> str:
        return f"{self.model}_{self.batch}.onnx"

    @property
    def qdq(self) -> str:
        return f"{self.model}_int8_qdq.onnx"

    @property
    def config(self) -> str:
        return f"{self.model.upper()}_CONFIG"

    @property
    def engine(self) -> str:
        return f"{self.model}_{ENGINE_PRECISION[self.precision]}_bs{self.batch}.engine"

    @property
    def build_input(self) -> str:
        """The ONNX the engine is built from: the QDQ model for int8, else the static copy."""
        return self.qdq if self.precision == "int8" else self.static

    builder = "build_engine.py"
    readme = KIT_README


def kit_names(job: TargetJob) -> KitNames:
    if not SAFE_NAME.match(job.variant.name):
        raise UserError(f"model name {job.variant.name!r} cannot name ixRT kit files (letters, digits, _ . - only)")
    return KitNames(job.variant.name, int(job.options["batch"]), job.precision)


# --- the static-batch ONNX ---------------------------------------------------------------------


def _set_batch(value: Any, batch: int) -> None:
    dim = value.type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = batch


def _constant_tensors(graph: Any) -> Dict[str, Any]:
    """Name -> TensorProto of every initializer and Constant node output (a Reshape's shape is either)."""
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    found[node.output[0]] = attr.t
    return found


def patch_reshape_batch(model: Any, batch: int, old_batches: Sequence[int]) -> List[str]:
    """Rewrite Reshape shape constants whose first dim is a traced batch; -1 stays (it is always right).

    A graph traced at batch 1 (or at the export batch) can carry that number in a Reshape target
    shape; a static engine of another batch would then reshape the wrong number of rows.
    """
    from onnx import numpy_helper

    consts = _constant_tensors(model.graph)
    patched = []
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        tensor = consts[node.input[1]]
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and len(shape) and shape[0] > 0 and shape[0] != batch and shape[0] in old_batches:
            shape[0] = batch
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
            patched.append(node.name or node.output[0])
    return patched


def make_static(src: Path, dst: Path, batch: int, old_batches: Sequence[int] = (1,)) -> Dict[str, Any]:
    """``src`` with every graph input and output at ``batch``, Reshapes patched, re-inferred and simplified."""
    import onnx

    from zoo.converters.onnx_canonical import save

    model = onnx.load(str(src), load_external_data=True)
    inits = {t.name for t in model.graph.initializer}
    for value in [v for v in model.graph.input if v.name not in inits] + list(model.graph.output):
        _set_batch(value, batch)
    patched = patch_reshape_batch(model, batch, old_batches)
    del model.graph.value_info[:]  # shapes of the dynamic graph; inferred again below
    simplified = model.ByteSize() < PROTOBUF_LIMIT
    if simplified:
        from onnxsim import simplify

        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        model, ok = simplify(model)
        if not ok:
            raise RuntimeError(f"onnxsim could not simplify the static-batch copy of {src.name}")
    files = save(model, dst)
    if not simplified:  # above 2 GiB shape inference must run on the file, and onnxsim cannot run at all
        onnx.shape_inference.infer_shapes_path(str(dst), str(dst))
    return {"files": files, "reshapes_patched": patched, "simplified": simplified}


def copy_onnx(src: Path, dst: Path) -> List[Path]:
    """Copy a model under a new name; one with external data is re-saved so its data file is renamed too."""
    if not src.with_name(external_data_name(src)).exists():
        shutil.copyfile(src, dst)
        return [dst]
    import onnx

    from zoo.converters.onnx_canonical import save

    return save(onnx.load(str(src), load_external_data=True), dst)


def dynamic_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    """The dynamic model on ``x``; one image at a time where it carries a traced batch and rejects ``x``."""
    run = ort_runner(path)
    try:
        return run(x)
    except Exception:  # ONNX Runtime raises its own error types; any failure here means "retry per image"
        return np.concatenate([run(x[i:i + 1]) for i in range(len(x))])


def static_parity_check(dynamic: Path, static: Path, batch: int, size: int, seed: int,
                        rtol: float = 1e-4, atol: float = 1e-5) -> Tuple[Check, float]:
    """The static copy and the dynamic model agree under ONNX Runtime on one seeded batch of ``batch``."""
    x = np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32)
    want = dynamic_outputs(dynamic, x)
    got = ort_runner(static)(x)
    same_shape = got.shape == want.shape
    diff = float(np.abs(got - want).max()) if same_shape else float("inf")
    ok = same_shape and bool(np.allclose(got, want, rtol=rtol, atol=atol))
    return Check(f"static batch-{batch} ONNX matches the dynamic ONNX", ok,
                 f"ONNX Runtime, batch {batch}: output {got.shape}, max |diff| {diff:.3g}"), diff


# --- the CONFIG file -----------------------------------------------------------------------------

ConfigValue = Union[str, List[str]]


def config_values(job: TargetJob, names: KitNames) -> Dict[str, ConfigValue]:
    """The CONFIG keys, from the job's input spec and options (file names relative to the kit)."""
    q = job.options["quant"]
    return {
        "IMGSIZE": str(job.input.size),
        "MODEL_NAME": names.model,
        # The canonical ONNX is already simplified, so the "original" the scripts would simplify is
        # the kit's _sim.onnx itself (and no third copy of the weights is shipped).
        "ORIGINE_MODEL": names.sim,
        # how the QDQ model was (int8) or would be (fp16) calibrated: observer, batch, number of batches
        "QUANT_OBSERVER": OBSERVER_OF_METHOD[str(q["method"])],
        "QUANT_BATCHSIZE": str(names.batch),
        "QUANT_STEP": str(calibration_batches(int(q["calib_images"]), names.batch)),
        "QUANT_SEED": str(int(q["seed"])),
        "DISABLE_QUANT_LIST": [str(n) for n in q.get("disable_quant_list") or []],
        # A ready QDQ model makes the scripts skip their own quantiser; fp16 kits leave it empty.
        "QUANT_EXIST_ONNX": names.qdq if job.precision == "int8" else "",
    }


def _bash_value(key: str, value: ConfigValue) -> str:
    if isinstance(value, list):  # the scripts expand "${DISABLE_QUANT_LIST[@]}": a bash array
        return "(" + " ".join(shlex.quote(v) for v in value) + ")" if value else ""
    if key == "QUANT_EXIST_ONNX" and value:
        # The scripts test this path as given: anchor it to the kit, which they know as CHECKPOINTS_DIR.
        return '"${CHECKPOINTS_DIR:-.}"/' + shlex.quote(value)
    return shlex.quote(value) if value else ""


def render_config(values: Dict[str, ConfigValue]) -> str:
    lines = [
        "# ixRT model zoo config (bash, sourced by the zoo's scripts).",
        "# IMGSIZE: input height and width; MODEL_NAME: basename of the onnx/engine files;",
        "# ORIGINE_MODEL: the exported ONNX; QUANT_*: the ixRT quantiser's settings (int8 only);",
        "# QUANT_EXIST_ONNX: a ready quantised model, which the scripts use instead of quantising.",
    ]
    lines += [f"{key}={_bash_value(key, values[key])}" for key in CONFIG_KEYS]
    return "\n".join(lines) + "\n"


def config_keys_in_file(path: Path) -> List[str]:
    return [m.group(1) for line in path.read_text().splitlines() if (m := re.match(r"^([A-Za-z_]\w*)=", line))]


def source_config(path: Path, checkpoints_dir: Path) -> Dict[str, str]:
    """Each CONFIG key's value as bash sees it after ``set -u; source CONFIG`` (arrays joined by spaces)."""
    bash = shutil.which("bash")
    if bash is None:
        raise RuntimeError("bash is not installed")
    script = 'set -eu; source "$1"; ' + " ".join(f'printf "%s=%s\\n" {k} "${{{k}[*]}}";' for k in CONFIG_KEYS)
    env = {**os.environ, "CHECKPOINTS_DIR": str(checkpoints_dir)}
    proc = subprocess.run([bash, "-c", script, "config-check", str(path)], capture_output=True, text=True,
                          env=env, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"bash could not source it: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def config_checks(path: Path, kit: Path, expected: Dict[str, ConfigValue]) -> List[Check]:
    keys = config_keys_in_file(path)
    checks = [Check("CONFIG has the vendor's key set", keys == list(CONFIG_KEYS),
                    f"keys {keys}" if keys != list(CONFIG_KEYS) else f"{len(keys)} keys, in the vendor's order")]
    name = "CONFIG parses with bash, values as configured"
    try:
        got = source_config(path, kit)
    except RuntimeError as e:
        return checks + [Check(name, False, str(e))]
    want = {k: " ".join(v) if isinstance(v, list) else v for k, v in expected.items()}
    if want["QUANT_EXIST_ONNX"]:
        want["QUANT_EXIST_ONNX"] = f"{kit}/{want['QUANT_EXIST_ONNX']}"
    wrong = [f"{k}={got.get(k)!r} (expected {want[k]!r})" for k in CONFIG_KEYS if got.get(k) != want[k]]
    checks.append(Check(name, not wrong,
                        "; ".join(wrong) if wrong else "set -u; source CONFIG: every value as expected"))
    if want["QUANT_EXIST_ONNX"]:
        exists = Path(got["QUANT_EXIST_ONNX"]).is_file()
        checks.append(Check("CONFIG QUANT_EXIST_ONNX is in the kit", exists, expected["QUANT_EXIST_ONNX"]))
    return checks


# --- the accuracy dataset's label file --------------------------------------------------------------


def write_val_map(images: Sequence[Tuple[Union[str, Path], int]], out: Path) -> Path:
    """``val_map.txt`` as the vendor's dataset reader wants it: ``<image basename>\\t<label>`` per line.

    The reader looks labels up by basename, so two images with one basename would be ambiguous.
    """
    seen: Dict[str, int] = {}
    lines = []
    for path, label in images:
        name = Path(path).name
        if not name or "\t" in name or "\n" in name:
            raise ValueError(f"image {str(path)!r}: its basename cannot be written to val_map.txt")
        if isinstance(label, bool) or int(label) != label or label < 0:
            raise ValueError(f"image {name}: label {label!r} is not a class index")
        if name in seen:
            raise ValueError(f"two images are named {name}: val_map.txt maps labels by basename")
        seen[name] = int(label)
        lines.append(f"{name}\t{int(label)}\n")
    out = Path(out)
    out.write_text("".join(lines))
    return out


def read_val_map(path: Path) -> Dict[str, int]:
    """Basename -> label, skipping malformed lines as the vendor's reader does."""
    table: Dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        parts = line.strip().split("\t")
        if len(parts) == 2 and parts[0].strip() and parts[1].strip().isdigit():
            table[parts[0].strip()] = int(parts[1])
    return table


# --- int8 ------------------------------------------------------------------------------------------


def calibration_batches(requested: int, batch: int) -> int:
    """Whole batches of the static batch: each calibration image is counted once, none twice."""
    return requested // batch


def quantize_int8(job: TargetJob, static: Path, dst: Path) -> Tuple[Dict[str, Any], List[Any]]:
    """The QDQ model of the static copy, calibrated on the job's images in whole static batches."""
    from zoo.targets.quantize import ImageCalibrationReader, quantize_qdq

    q, batch = job.options["quant"], int(job.options["batch"])
    if job.calibration is None:
        raise RuntimeError("int8 needs calibration images, and the job has none")
    requested = int(q["calib_images"])
    images = job.calibration(calibration_batches(requested, batch) * batch)
    reader = ImageCalibrationReader(images, job.input, job.spec.input_name, batch)
    # ixRT's ONNX Runtime recipe calibrates with Entropy (q["method"]). ONNX Runtime keeps every
    # calibrated activation of every batch in memory whatever the method (about 130 MB per image
    # for resnext50_32x4d), so calib_images, not the method, is what bounds memory here.
    # TensorRT-style builders take symmetric int8 only (zero points of 0), for activations too.
    settings = quantize_qdq(static, dst, reader, method=str(q["method"]), per_channel=True,
                            activation_type="QInt8", weight_type="QInt8", activation_symmetric=True,
                            weight_symmetric=True, quantize_bias=False, exclude=[str(n) for n in q.get("disable_quant_list") or []])
    settings.update(calib_images_requested=requested, calib_images_used=len(images), calib_batch=batch,
                    calib_batches=len(images) // batch)
    return settings, images


def bias_dtype_check(path: Path) -> Check:
    """No int32 tensor feeds a DequantizeLinear: the biases stayed float, as ixRT's recipe asks."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    int32 = {t.name for t in g.initializer if t.data_type == onnx.TensorProto.INT32}
    quantized = [n.input[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]
    return Check("int8 biases not quantised", not quantized,
                 f"{len(quantized)} int32 biases dequantised" if quantized else "biases stay float32")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def int8_cosine_check(static: Path, qdq: Path, images: Sequence[Any], job: TargetJob, n: int,
                      minimum: float) -> Tuple[Check, float]:
    """The QDQ model against the fp32 static model on the first ``n`` calibration images, preprocessed."""
    from zoo.preprocess import preprocess

    batch = int(job.options["batch"])
    x = np.stack([preprocess(im, job.input) for im in images[:n]])
    ref = run_static(ort_runner(static), x, batch)
    got = run_static(ort_runner(qdq), x, batch)
    from zoo.validators.numerics import GATES, centred_log

    domain = ""
    if job.weights.output.value == "probs" and GATES["int8"].probs_as_logits:
        ref, got, domain = centred_log(ref), centred_log(got), " (centred log-probabilities)"
    worst = float(cosine_rows(ref, got).min())
    return Check(f"int8 QDQ outputs vs fp32 (cosine >= {minimum})", worst >= minimum,
                 f"min cosine {worst:.5f}{domain} over {len(x)} calibration images"), worst


def qdq_checks(path: Path, opset: int, input_name: str, shape: List[int]) -> List[Check]:
    from zoo.targets.quantize import count_qdq

    counts = count_qdq(path)
    checks = [Check("int8 model is QDQ", min(counts.values()) > 0,
                    f"{counts['QuantizeLinear']} QuantizeLinear, {counts['DequantizeLinear']} DequantizeLinear")]
    checks += [Check(f"int8 {c.name}", c.passed, c.detail)
               for c in onnx_requirements(path, opset, input_name, shape, allowed_ops=QDQ_OPS)]
    return checks + [bias_dtype_check(path)]


# --- the engine ------------------------------------------------------------------------------------


def builder_package() -> Optional[str]:
    """``ixrt`` where the ixRT SDK is importable (found, not imported: it may need a device to load).

    The SDK installs an ``ixrt`` module beside its TensorRT-compatible ``tensorrt`` one (the vendor's own
    build_engine.py imports both). A ``tensorrt`` alone is NVIDIA's, whose engines are another artifact."""
    if importlib.util.find_spec("ixrt") is not None and importlib.util.find_spec("tensorrt") is not None:
        return "ixrt"
    return None


def device_present() -> bool:
    """An Iluvatar device answers ``ixsmi``; an NVIDIA GPU does not count (its engines are another artifact)."""
    from zoo.targets.kit import device_listed

    return device_listed("ixsmi")


def compiler_label(package: Optional[str], ran: bool) -> str:
    if package:
        return f"{package} (found, {'Iluvatar device present' if ran else 'no Iluvatar device'})"
    if importlib.util.find_spec("tensorrt") is not None:
        return "ixRT (not installed; the tensorrt module here is NVIDIA's, which does not build ixRT engines)"
    return "ixRT (not installed)"


def build_commands(names: KitNames, workspace_gib: float) -> List[str]:
    """The builder script, and ixRT's own CLI as the alternative; both run from the kit folder."""
    ws = f"{workspace_gib:g}"
    return [
        shlex.join(["python3", names.builder, "--onnx", names.build_input, "--engine", names.engine,
                    "--precision", names.precision, "--workspace-gib", ws]),
        shlex.join(["ixrtexec", "--onnx", names.build_input, "--save_engine", names.engine,
                    "--precision", names.precision]),
    ]


def run_builder(kit: Path, names: KitNames, workspace_gib: float, timeout_s: float) -> List[Check]:
    """Build the engine with the kit's own script in a child process (a crashing SDK cannot take us down)."""
    from zoo.targets.kit import log_tail, run_tool

    args = [names.builder, "--onnx", names.build_input, "--engine", names.engine,
            "--precision", names.precision, "--workspace-gib", f"{workspace_gib:g}"]
    build = run_tool(sys.executable, args, kit, "build_engine.log", timeout_s)
    engine = kit / names.engine
    ok = build.ok and engine.is_file() and engine.stat().st_size > 0
    checks = [Check("engine built", ok, f"{names.engine}, {engine.stat().st_size} bytes" if ok
                    else f"exit {build.returncode}: {log_tail(build.log)}")]
    if ok:
        run = run_tool(sys.executable, [names.builder, "--onnx", names.build_input, "--engine", names.engine,
                                        "--check"], kit, "check_engine.log", timeout_s)
        checks.append(Check("engine runs one batch", run.ok, log_tail(run.log, 1)))
    return checks


def readme(job: TargetJob, names: KitNames, commands: List[str], quant: Optional[Dict[str, Any]],
           calibration: Sequence[str] = ()) -> str:
    """The kit's README; ``calibration`` is its Calibration section (``zoo.targets.kit.calibration_section``)."""
    i = job.input
    lines = [
        f"# {names.model} for Iluvatar CoreX ixRT ({job.precision}, batch {names.batch})",
        "",
        f"- `{names.sim}`: opset {job.spec.opset}, input `{job.spec.input_name}`, dynamic batch, simplified",
        f"- `{names.static}`: the same model at a static batch of {names.batch}",
    ]
    if quant:
        lines.append(f"- `{names.qdq}`: int8 QDQ (ONNX Runtime, per-channel symmetric QInt8, "
                     f"{quant['calibrate_method']} calibration on {quant['calib_images_used']} images in "
                     f"{quant['calib_batches']} batches of {quant['calib_batch']}, each image once, bias float)")
    lines += [
        f"- `{names.config}`: the config DeepSparkInference's scripts source "
        "(set CHECKPOINTS_DIR to this folder and CONFIG_DIR to this file)",
        f"- `{names.builder}`: the engine builder and checker (the ixRT SDK's `tensorrt` and `ixrt` modules; "
        "`--check` also needs cuda-python, as the vendor's inference.py does, and no torch)",
        "",
        *([*calibration, ""] if calibration else []),
        "Build the engine from this folder, on a machine with the ixRT SDK and an Iluvatar device:",
        "",
        *[f"    {c}" for c in commands[:1]],
        "",
        "or with ixRT's own CLI:",
        "",
        *[f"    {c}" for c in commands[1:]],
        "",
        *readme_lines(job, names.batch),
        "",
        "Compare one batch of the engine with ONNX Runtime:",
        "",
        "    " + shlex.join(["python3", names.builder, "--onnx", names.build_input, "--engine", names.engine,
                            "--check"]),
        "",
        f"Accuracy data: an ImageFolder root with `val_map.txt` (`<image basename><TAB><label>` per line); "
        f"preprocessing: resize {i.resize_short()}, centre crop {i.size}, mean {i.mean}, std {i.std}, "
        f"{i.interpolation.value}.",
    ]
    return "\n".join(lines) + "\n"


# --- the target ------------------------------------------------------------------------------------


class IxrtTarget(Target):
    name = "ixrt"
    options = IxrtOptions
    tools = ("onnxruntime", "tensorrt", "ixrt")
    calib_format = NPY_FORMAT

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        super().check_options(options, precision)
        if precision not in PRECISIONS:
            raise UserError(f"precision={precision}: ixRT kits are {' or '.join(PRECISIONS)}")
        q = options["quant"]
        if str(q["method"]) not in OBSERVER_OF_METHOD:
            raise UserError(f"target.quant.method={q['method']}: choose one of {', '.join(OBSERVER_OF_METHOD)}")
        batch = int(options["batch"])
        if precision == "int8" and int(q["calib_images"]) < batch:
            raise UserError(f"target.quant.calib_images={q['calib_images']}: calibration runs in whole batches of the "
                            f"static batch ({batch}); give at least {batch} (a multiple of {batch} uses every image)")

    def prepare(self, job: TargetJob) -> Path:
        """``<model>_sim.onnx`` (the canonical, dynamic) and ``<model>_<batch>.onnx`` (static); returns the latter."""
        names = kit_names(job)
        copy_onnx(job.onnx_path, job.stage / names.sim)
        traced = sorted({1, int(job.spec.batch)})  # the batches an export may have baked into a Reshape
        made = make_static(job.stage / names.sim, job.stage / names.static, names.batch, traced)
        self._static_info = {"reshapes_patched": made["reshapes_patched"], "simplified": made["simplified"]}
        return job.stage / names.static

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        names = kit_names(job)
        kit, opts = job.stage, job.options
        if job.precision == "int8" and prepared.with_name(external_data_name(prepared)).exists():
            raise UserError("int8 ixRT kits of models above 2 GiB are not supported: use precision=fp16")
        checks, info = self._onnx_checks(job, names, prepared)
        quant = None
        if job.precision == "int8":
            quant, int8_checks, cos = self._int8(job, names, prepared)
            checks += int8_checks
            info.update(quantization=quant, int8_min_cosine=cos,
                        calibration_method=f"onnxruntime quantize_static {quant['calibrate_method']}, symmetric QInt8 "
                                           "(the kit's QDQ model)")
        values = config_values(job, names)
        (kit / names.config).write_text(render_config(values))
        checks += config_checks(kit / names.config, kit, values)
        shutil.copyfile(BUILDER_SOURCE, kit / names.builder)
        device = write_device_scripts(job, kit, names.config, names.engine, names.build_input, names.batch)
        checks += script_checks([kit / names.builder, *device])
        commands = build_commands(names, float(opts["workspace_gib"]))
        # the calibration images are drawn by now: the README says where they came from, as the manifest will
        calibration = calibration_section(calibration_record(job, info.get("calibration_method")), job, self.name)
        (kit / names.readme).write_text(readme(job, names, commands, quant, calibration))
        package = builder_package()
        ran = package is not None and device_present()
        if ran:
            checks += run_builder(kit, names, float(opts["workspace_gib"]), float(opts["build_timeout_s"]))
        engine = kit / names.engine
        compiled = ran and engine.is_file()
        compiler = compiler_label(package, ran)
        info.update(compiler_ran=ran, run_from="the kit folder")
        return Built(files=kit_files(job.stage), primary=engine if compiled else prepared, compiled=compiled,
                     compiler=compiler, commands=commands, checks=checks, info=info)

    def _onnx_checks(self, job: TargetJob, names: KitNames, static: Path) -> Tuple[List[Check], Dict[str, Any]]:
        """Both ONNX files meet ixRT's requirements, and the static one computes what the dynamic one does."""
        spec, sim = job.spec, job.stage / names.sim
        shape = [names.batch, 3, job.input.size, job.input.size]
        checks = onnx_requirements(sim, spec.opset, spec.input_name, None)
        checks += [Check(f"static {c.name}", c.passed, c.detail)
                   for c in onnx_requirements(static, spec.opset, spec.input_name, shape)]
        parity, diff = static_parity_check(sim, static, names.batch, job.input.size, job.seed)
        # what prepare() found while making the static copy (patched Reshapes, whether onnxsim ran)
        info = {"batch": names.batch, "static_max_abs_diff": diff, "engine": names.engine,
                **getattr(self, "_static_info", {})}
        return checks + [parity], info

    def _int8(self, job: TargetJob, names: KitNames, static: Path) -> Tuple[Dict[str, Any], List[Check], float]:
        q, qdq = job.options["quant"], job.stage / names.qdq
        quant, images = quantize_int8(job, static, qdq)
        checks = qdq_checks(qdq, job.spec.opset, job.spec.input_name, [names.batch, 3, job.input.size, job.input.size])
        cos_check, cos = int8_cosine_check(static, qdq, images, job, int(q["check_images"]), float(q["min_cosine"]))
        return quant, checks + [cos_check], cos

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        """The engine on the device, where one was built here; None otherwise (no ixRT runtime)."""
        if not built.compiled or not built.primary.name.endswith(".engine") or not device_present():
            return None
        from zoo.targets.ixrt_engine import EngineRunner

        runner = EngineRunner(built.primary)
        return lambda x: run_static(runner, x, runner.batch)

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        from zoo.targets.kit import describe_kit

        lines = describe_kit("ixRT", built, job.stage)
        names = kit_names(job)
        lines.append(f"kit: {names.sim}, {names.static}" + (f", {names.qdq}" if job.precision == "int8" else "")
                     + f", {names.config}, {names.builder}, {names.readme}")
        scripts = script_names(job.variant.name, job.precision)
        lines.append(f"on the device: {scripts['accuracy']}, {scripts['performance']} (inference.py, preprocess.json)")
        if "int8_min_cosine" in built.info:
            lines.append(f"int8 QDQ vs fp32: min cosine {built.info['int8_min_cosine']:.4f}")
        return lines

