"""MindSpore MindIR: a MindSpore ResNeXt built from the variant's spec, the source weights mapped onto it.

MindIR is not converted from the ONNX (ONNX -> MindIR needs MindSpore Lite's converter, which is not
on the registry): the pipeline hands over the source weights under canonical (timm) names, the
network in :mod:`zoo.targets.mindspore_net` takes them, and ``mindspore.export`` writes the MindIR
with a dynamic or a static batch (from a MindCV source, MindCV's own network takes them instead).
MindSpore and Paddle clash in one process (oneDNN symbols), so all
MindSpore work runs in a child process (:mod:`zoo.targets.mindir_worker`); this module never imports MindSpore.
Where MindSpore is not installed, compile leaves a kit: the weights, the export request and the command.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

import zoo
from zoo.errors import UserError
from zoo.registry.schema import Arch
from zoo.config import bounds
from zoo.targets.options import ExportOptions
from zoo.targets.base import Built, Check, NativeSession, Runner, Target, TargetJob, split_sets, stack_sets
from zoo.targets.mindir_worker import PATH_KEYS  # the worker module imports MindSpore only inside its commands


@dataclass
class MindirOptions(ExportOptions):
    worker_timeout_s: Optional[float] = 1800.0  # null: no limit

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.worker_timeout_s", self.worker_timeout_s, "give seconds (> 0), or null for no limit")

WORKER = "zoo.targets.mindir_worker"
ARTIFACT = "model.mindir"
KIT_REQUEST = "export.json"
KIT_WEIGHTS = "weights.npz"
STDERR_TAIL = 15  # lines of a failed child's stderr quoted in the error


class StateMismatchError(ValueError):
    """The canonical weights do not fit the network built from the variant's spec."""


def mindspore_version() -> Optional[str]:
    """The installed MindSpore version, read without importing it (None: not installed)."""
    try:
        return importlib.metadata.version("mindspore")
    except importlib.metadata.PackageNotFoundError:
        return None


def arch_request(arch: Arch) -> Dict[str, Any]:
    """The Arch spec as plain JSON data (enums by value)."""
    return {
        "layers": [int(n) for n in arch.layers], "cardinality": int(arch.cardinality),
        "base_width": int(arch.base_width), "stem": _value(arch.stem), "stem_width": int(arch.stem_width),
        "shortcut": _value(arch.shortcut), "num_classes": int(arch.num_classes),
    }


def _value(x: Any) -> str:
    return str(getattr(x, "value", x))


def outputs_probs(job: TargetJob) -> bool:
    """Whether the source publishes probabilities, so the MindIR ends in a Softmax like it."""
    return _value(job.weights.output) == "probs"


def static_batch(options: Dict[str, Any]) -> Optional[int]:
    """The MindIR's fixed batch; None for a dynamic batch."""
    return None if bool(options["dynamic_batch"]) else int(options["batch"])


def batch_label(options: Dict[str, Any]) -> Any:
    """The batch as the manifest records it: "dynamic" or the static batch."""
    batch = static_batch(options)
    return "dynamic" if batch is None else batch


def expected_input_shape(job: TargetJob) -> List[int]:
    """What the exported graph's input must be (-1 marks the dynamic batch, as MindIR stores it)."""
    batch = static_batch(job.options)
    return [-1 if batch is None else batch, 3, job.input.size, job.input.size]


def worker_env() -> Dict[str, str]:
    """The child's environment: this very ``zoo`` importable, MindSpore's log at errors only."""
    env = dict(os.environ)
    root = str(Path(zoo.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("GLOG_v", "3")  # MindSpore's warnings would crowd the stderr tail quoted on failure
    return env


def call_worker(command: str, request: Dict[str, Any], work: Path, timeout: Optional[float]) -> Dict[str, Any]:
    """Run one worker command in a child process; its JSON report, or a clear error."""
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"mindir-{command}-", dir=work) as tmp:
        folder = Path(tmp)
        report_path = folder / "report.json"
        request_path = folder / "request.json"
        # The worker reads relative paths from the request file's folder (a kit's export.json is written
        # that way); here they are the caller's, relative to this process's working directory.
        request = {k: str(Path(v).resolve()) if k in PATH_KEYS and v is not None else v for k, v in request.items()}
        request_path.write_text(json.dumps({**request, "report": str(report_path.resolve())}))
        try:
            proc = subprocess.run([sys.executable, "-m", WORKER, command, str(request_path)], capture_output=True,
                                  text=True, env=worker_env(), timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(f"MindSpore worker '{command}' did not finish in {timeout} s "
                               f"(target.worker_timeout_s){_tail(e.stderr)}") from None
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    if report is not None and report.get("kind") == "state":
        raise StateMismatchError(f"the weights do not fit the MindSpore network: {report['error']}")
    if proc.returncode != 0 or report is None or not report.get("ok"):
        status = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        raise RuntimeError(f"MindSpore worker '{command}' failed ({status}){_tail(proc.stderr)}")
    return report


def _tail(stderr: Any) -> str:
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line for line in text.strip().splitlines() if line.strip()][-STDERR_TAIL:]
    return "; its last stderr lines:\n" + "\n".join(lines) if lines else " (no stderr output)"


def _make_readable(paths: List[Path]) -> None:
    """MindSpore writes its files owner-read-only (0400); give them the usual modes so the artifact
    can be copied, cached and replaced like every other target's."""
    for p in paths:
        p.chmod(0o755 if p.is_dir() else 0o644)


class MindirTarget(Target):
    name = "mindir"
    options = MindirOptions
    tools = ("mindspore",)
    extra = "mindspore,onnx"
    memory_factor, streamed_memory_factor = 6.0, 4.0  # streamed: MindSpore's copy beside the saved state
    hub_library = "mindspore"
    has_runtime = True
    needs_state = True

    def usage_code(self, manifest: Dict[str, Any], input_name: str, x: str) -> Optional[Dict[str, List[str]]]:
        if not manifest["artifact"]["compiled"]:
            return None
        return {"imports": ["import mindspore as ms", "from mindspore import nn"],
                "load": [f'graph = nn.GraphCell(ms.load("{manifest["artifact"]["primary"]}"))'],
                "score": [f"scores = graph(ms.Tensor({x})).asnumpy()[0]"]}

    def check_options(self, options: Dict[str, Any], precision: str) -> None:
        super().check_options(options, precision)
        if precision not in options["precisions"]:
            raise UserError(f"target mindir exports {', '.join(options['precisions'])} only, not {precision}")

    def prepare(self, job: TargetJob) -> Path:
        # MindIR is built from the weights, not from the ONNX; the ONNX stays the parity reference
        return job.onnx_path

    def export_request(self, job: TargetJob, state: Path, out: Path) -> Dict[str, Any]:
        request = {"arch": arch_request(job.variant.arch), "state": str(state), "out": str(out),
                   "size": int(job.input.size), "batch": static_batch(job.options), "softmax": outputs_probs(job)}
        native = job.native_network("mindspore")
        if native:
            request["native"] = native  # export the source's own MindSpore network with the weights
        return request

    def compile(self, job: TargetJob, prepared: Path) -> Built:
        if job.state_path is None:
            raise ValueError("target mindir needs the canonical weights (job.state_path)")
        version = mindspore_version()
        if version is None:
            return self._kit(job)
        request = self.export_request(job, job.state_path, job.stage / ARTIFACT)
        stacked = stack_sets(job.parity_sets)
        if stacked is not None:  # the worker also runs the parity sets through the file it wrote
            request["parity_input"], request["parity_output"] = job.work / "parity-in.npy", job.work / "parity-out.npy"
            np.save(request["parity_input"], np.ascontiguousarray(stacked, dtype=np.float32))
        report = call_worker("export", request, job.work, job.options.get("worker_timeout_s"))
        files = [job.stage / f for f in report["files"]]
        _make_readable(files + sorted({f.parent for f in files} - {job.stage}))
        primary = job.stage / report["primary"]
        return Built(files=files, primary=primary, compiled=True, compiler=f"mindspore {version}",
                     checks=self._checks(job, report, primary),
                     info={"mindspore": report["mindspore"], "batch": batch_label(job.options),
                           "input_shape": report["input_shapes"][0] if report["input_shapes"] else None,
                           "size_bytes": sum(f.stat().st_size for f in files),
                           "parameters": report["parameters"], "softmax": outputs_probs(job),
                           "worker_s": report["seconds"]},  # MindSpore's export, and its run of the parity sets
                     outputs=split_sets(np.load(request["parity_output"]), job.parity_sets) if stacked is not None else None)

    def _checks(self, job: TargetJob, report: Dict[str, Any], primary: Path) -> List[Check]:
        size = primary.stat().st_size if primary.is_file() else 0
        want = expected_input_shape(job)
        kind = "dynamic batch" if want[0] == -1 else f"static batch {want[0]}"
        return [
            Check("mindir written", size > 0, f"{primary.name}, {size} bytes"),
            Check("mindir input shape", report["input_shapes"] == [want],
                  f"inputs {report['input_shapes']}, expected [{want}] ({kind})"),
            Check("weights mapped", report["state_keys"] > 0 and report["mapped"] == report["state_keys"],
                  f"{report['state_keys']} canonical arrays onto {report['mapped']} MindSpore parameters"),
        ]

    def _kit(self, job: TargetJob) -> Built:
        """MindSpore is not installed here: the weights and the export request, for a machine that has it."""
        weights = job.stage / KIT_WEIGHTS
        shutil.copyfile(job.state_path, weights)
        request = self.export_request(job, Path(KIT_WEIGHTS), Path(ARTIFACT))
        request["report"] = "export-report.json"
        (job.stage / KIT_REQUEST).write_text(json.dumps(request, indent=1))
        # the worker takes relative paths from the request's folder, so the kit runs wherever it is copied
        extra = request["native"]["extra"] if "native" in request else "mindspore"
        commands = [f"pip install 'resnext-zoo[{extra}]'",
                    f"python -m {WORKER} export {KIT_REQUEST}   # in this folder"]
        return Built(files=[job.stage / KIT_REQUEST, weights], primary=job.stage / KIT_REQUEST, compiled=False,
                     compiler="mindspore (not installed)", commands=commands,
                     checks=[Check("kit weights", weights.stat().st_size == Path(job.state_path).stat().st_size,
                                   f"{KIT_WEIGHTS}, {weights.stat().st_size} bytes")],
                     info={"batch": batch_label(job.options), "softmax": outputs_probs(job)})

    def native_session(self, primary: Path, precision: str, threads: int, batch: int) -> Optional[NativeSession]:
        # Only in a process of its own (zoo bench's worker, which sets OMP_NUM_THREADS to ``threads``):
        # MindSpore must not share a process with Paddle or another runtime's oneDNN.
        from mindspore import nn

        from zoo.targets.mindir_worker import setup_cpu

        ms = setup_cpu()
        graph = nn.GraphCell(ms.load(str(primary)))
        return NativeSession(call=lambda t: graph(t).asnumpy(), input_dtype="float32",
                             runtime=f"mindspore {ms.__version__}", prepare=ms.Tensor)

    def load(self, job: TargetJob, built: Built) -> Optional[Runner]:
        if not built.compiled:
            return None
        timeout = job.options.get("worker_timeout_s")

        def run(x: np.ndarray) -> np.ndarray:
            with tempfile.TemporaryDirectory(prefix="mindir-io-", dir=job.work) as tmp:
                src, dst = Path(tmp) / "input.npy", Path(tmp) / "output.npy"
                np.save(src, np.ascontiguousarray(x, dtype=np.float32))
                call_worker("run", {"model": str(built.primary), "input": str(src), "output": str(dst),
                                    "batch": static_batch(job.options)}, job.work, timeout)
                return np.load(dst)

        return run

    def describe(self, job: TargetJob, built: Built) -> List[str]:
        lines = super().describe(job, built)
        if built.compiled:
            shape = built.info.get("input_shape")
            head = "softmax probabilities" if built.info.get("softmax") else "logits"
            batch = "dynamic batch" if built.info["batch"] == "dynamic" else f"static batch {built.info['batch']}"
            lines.append(f"MindIR {built.primary.name} ({built.info['size_bytes'] / 1e6:.1f} MB), input {shape} "
                         f"({batch}), outputs {head}; {built.compiler}, runs with mindspore.load + nn.GraphCell")
        return lines
