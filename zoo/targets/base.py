"""The interface every target implements: prepare, compile, run, describe.

A target starts from the canonical ONNX the pipeline has already validated against the source
model (``TargetJob.onnx_path``, exported with the target's own :meth:`Target.onnx_spec`). Everything
a target knows about its toolchain stays in its module; the pipeline only calls these four jobs and
checks what comes back (parity of the runnable artifact, the kit's own checks).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

from zoo.calibration import CalibrationSet
from zoo.converters.spec import OnnxSpec
from zoo.errors import UserError
from zoo.targets.options import ExportOptions
from zoo.registry.schema import InputSpec, Variant, Weights

# A loaded artifact: a normalised NCHW float32 batch in, the registry's output semantics out.
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass
class TargetJob:
    """Everything a target gets from the pipeline."""

    variant: Variant
    weights: Weights
    input: InputSpec  # the effective evaluation preprocessing of (variant, weights)
    precision: str
    options: Dict[str, Any]  # conf/target/<name>.yaml, overrides applied, as plain data
    onnx_path: Path  # the canonical ONNX, validated against the source model
    spec: OnnxSpec  # what the canonical ONNX was exported with
    stage: Path  # the artifact folder being built (swapped in atomically when the build succeeds)
    work: Path  # scratch space, deleted after the build
    seed: int = 0
    state_path: Optional[Path] = None  # canonical-named weights (.npz) when ``needs_state``
    # n -> n seeded calibration images (RGB PIL images, not preprocessed: each target preprocesses
    # them the way its toolchain does); it records what it handed out (zoo.calibration.CalibrationSet)
    calibration: Optional[CalibrationSet] = None
    calib_data: Optional[Path] = None  # the user's calib_data folder (images, or a `zoo calib` set)
    progress: bool = True
    # framework -> the source's own network there, or None (SourceAdapter.native_network)
    native_network: Callable[[str], Optional[Dict[str, str]]] = lambda framework: None
    # the parity sets (name -> inputs) the artifact is checked on; a target whose runtime needs a process
    # of its own may run them in its compiler's process (Built.outputs)
    parity_sets: Dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class CalibFormat:
    """How a target's int8 toolchain reads calibration data (``zoo calib`` writes it; zoo.calib_formats)."""

    kind: str          # jpeg | rgbchw | npy: which writer makes each file
    folder: str        # the data sub-folder, named as the target's build kit names it
    suffix: str        # the file suffix the target's tool picks files up by
    needs_input: bool  # resized / cropped per the variant's InputSpec, so model= is required
    filelist: bool     # a filelist.txt beside the data files
    description: str
    use: str           # how to point the toolchain at the set: {data}, {set_folder} and {n} filled in


# Float32 CHW .npy files, normalised: what ONNX Runtime's and NNCF's calibration readers take.
NPY_FORMAT = CalibFormat("npy", "npy", ".npy", True, True,
                         "float32 CHW .npy, resized, cropped and normalised per the InputSpec",
                         "quantize_static(..., NpyCalibrationReader('{set_folder}', input_name, batch))"
                         "  (zoo.calib_formats)")


@dataclass
class NativeSession:
    """A runtime's own session over a built artifact, for timing: ``call`` is the runtime's call on one
    prepared batch, with no conversion or copying around it (``zoo bench``)."""

    call: Callable[[np.ndarray], Any]
    input_dtype: str  # the numpy dtype the artifact's input takes
    runtime: str  # "onnxruntime 1.32.0"
    prepare: Callable[[np.ndarray], Any] = lambda x: x  # the input in the runtime's own type, made once, untimed


@dataclass
class Check:
    """One validation of a build kit or artifact (a config parses, a file has the right size ...)."""

    name: str
    passed: bool
    detail: str = ""

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass
class Built:
    """What :meth:`Target.compile` produced."""

    files: List[Path]  # every file of the artifact or kit, inside ``job.stage``
    primary: Path  # the file a user deploys (the engine, the IR, the kit's config ...)
    compiled: bool  # whether the compiler ran (False: a kit, ready for the vendor's compiler)
    compiler: str  # "onnxruntime 1.32.0", "vamc (not installed)", ...
    commands: List[str] = field(default_factory=list)  # the exact commands that build it on the vendor's machine
    checks: List[Check] = field(default_factory=list)
    info: Dict[str, Any] = field(default_factory=dict)  # target-specific facts for the manifest
    # The artifact's outputs on each of job.parity_sets, from the files as written, where the compiler's
    # process ran them (MindSpore: one process start instead of two); None: the pipeline runs load().
    outputs: Optional[Dict[str, np.ndarray]] = None


class Target(ABC):
    """One artifact format: a subclass in ``zoo/targets/<module>.py`` plus ``conf/target/<name>.yaml``,
    whose ``plugin:`` names the class. Everything the rest of the package needs to know about a target
    is on its class; ``zoo.targets`` finds it from the YAML."""

    name: str
    options: ClassVar[Type[ExportOptions]] = ExportOptions  # the YAML's typed schema
    tools: ClassVar[Tuple[str, ...]] = ("onnxruntime",)  # packages whose versions identify an artifact
    extra: ClassVar[str] = "onnx"  # the pyproject extra that installs what it needs here
    # Peak memory of a conversion / fp32 weight bytes (zoo.memory_gate): models held in memory, and
    # giants past protobuf's 2 GiB limit whose weights are streamed. Measured peaks, rounded up.
    memory_factor: ClassVar[float] = 6.0
    streamed_memory_factor: ClassVar[float] = 6.0
    calib_format: ClassVar[Optional[CalibFormat]] = None  # None: no int8 calibration step
    hub_library: ClassVar[Optional[str]] = None  # the Hub's library_name; None: a vendor's SDK runs it
    has_runtime: ClassVar[bool] = False  # whether its artifacts can run on a CPU machine (validate, bench)
    needs_state: bool = False  # True: the pipeline saves the canonical-named source weights for it
    restores_accuracy: bool = False  # True: int8 layers can go back to float (``restore_accuracy``)

    def usage_code(self, manifest: Dict[str, Any], input_name: str, x: str) -> Optional[Dict[str, List[str]]]:
        """For the model card: the ``imports``, the ``load`` lines and the ``score`` line computing
        ``scores`` for the preprocessed batch expression ``x``; None where the artifact is a kit."""
        return None

    def writes_own_weights(self, precision: str) -> bool:
        """Whether the artifact holds a new copy of the weights on disk (the free-space estimate)."""
        return True

    def onnx_spec(self, options: Dict[str, Any], precision: str) -> OnnxSpec:
        """The canonical ONNX this target starts from, read from its config."""
        return OnnxSpec(
            opset=int(options["opset"]), input_name=str(options["input_name"]),
            output_name=str(options["output_name"]), dynamic_batch=bool(options["dynamic_batch"]),
            batch=int(options["batch"]), simplify=bool(options.get("simplify", True)),
        )

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        """Raise UserError for options this target cannot take (called before any work). Types and
        ranges are checked when the config is composed (``Target.options``); this is for the rest."""

    @abstractmethod
    def prepare(self, job: TargetJob) -> Path:
        """The target-ready ONNX (the vendor's opset, batch, input name), inside ``job.stage``."""

    @abstractmethod
    def compile(self, job: TargetJob, prepared: Path) -> Built:
        """Build the artifact, or the complete kit when the compiler is not installed."""

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        """A runner for the artifact where a runtime exists here; None where none does."""
        return None

    def native_session(self, primary: Path, precision: str, threads: int, batch: int) -> Optional[NativeSession]:
        """The runtime's own session over the artifact whose main file is ``primary``, on ``threads``
        threads, for inputs of ``batch`` images, as a deployment at that batch would set it up; for
        ``zoo bench``, which calls it in a process of its own. None where no runtime runs here."""
        return None

    def restore_accuracy(self, job: TargetJob, built: Built, labelled: Any, max_drop_pp: float,
                         max_float_layers: Optional[int]) -> Built:
        """Rebuild the int8 artifact with its most accuracy-sensitive layers in float, so that top-1 on
        ``labelled`` drops by at most ``max_drop_pp`` points; only targets with ``restores_accuracy``."""
        raise UserError(f"target {self.name} cannot return int8 layers to float (max_drop=)")

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        """Lines for the one-screen summary."""
        lines = []
        if not built.compiled:
            lines.append(f"kit ready; {built.compiler}: the compiler was not run. On a machine that has it:")
            lines += [f"  $ {c}" for c in built.commands]
        return lines


def batches(x: np.ndarray, batch: Optional[int]) -> Sequence[tuple[np.ndarray, int]]:
    """Split ``x`` into chunks of a static batch, padding the last; yields (chunk, rows to keep)."""
    if batch is None:
        return [(x, len(x))]
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        keep = len(chunk)
        if keep < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - keep, axis=0)])
        out.append((chunk, keep))
    return out


def stack_sets(sets: Dict[str, np.ndarray]) -> Optional[np.ndarray]:
    """Every set in one array, for one runtime call; None when their shapes differ."""
    arrays = list(sets.values())
    if not arrays or len({(a.shape[1:], a.dtype) for a in arrays}) != 1:
        return None
    return np.concatenate(arrays)


def split_sets(out: np.ndarray, sets: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The outputs of :func:`stack_sets`'s array, back per set."""
    ends = np.cumsum([len(a) for a in sets.values()])
    return dict(zip(sets, np.split(out, ends[:-1])))


def run_static(fn: Runner, x: np.ndarray, batch: Optional[int]) -> np.ndarray:
    """Run ``fn`` over ``x`` in chunks of a static ``batch`` (None: in one call)."""
    return np.concatenate([fn(chunk)[:keep] for chunk, keep in batches(x, batch)])
