"""Measure the built artifacts of one variant on this machine and record the figures in their manifests.

Every artifact under ``out_dir`` for the variant (filtered by source, target and precision) whose
target has a runtime here is timed at each batch size, one worker process per point
(``zoo.bench.worker``). A static-batch artifact is timed at its own batch only. A batch whose
estimated memory would not fit in what the machine has available is skipped with the reason. The
figures go into the manifest under ``bench.<machine id>``: a re-run here replaces them, another
machine adds its own entry.
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from zoo.bench import machine
from zoo.errors import UserError

# The estimate of a point's peak memory: the runtime itself, its copies of the weights, and per image
# the activations a ResNeXt holds at its widest (256 channels at a quarter of the input side), times the
# buffers a runtime keeps alive at once. Conservative against the peaks the workers report.
RUNTIME_BYTES = 600 * 2**20
WEIGHT_COPIES = 3
ACTIVATION_COPIES = 16
MEMORY_FRACTION = 0.85  # of the memory available now: room for the OS and the caller


@dataclass
class Artifact:
    folder: Path
    manifest: Dict[str, Any]

    @property
    def target(self) -> str:
        return str(self.manifest["target"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def label(self) -> str:
        m = self.manifest
        return f"{m['source']}/{m['tag']} {m['target']} {m['precision']}"

    @property
    def static_batch(self) -> Optional[int]:
        spec = self.manifest.get("onnx") or {}
        return None if spec.get("dynamic_batch", True) else int(spec.get("batch", 1))

    def weight_bytes(self) -> int:
        return sum(int(f.get("size", 0)) for f in self.manifest["artifact"].get("files", []))


@dataclass
class Outcome:
    """One artifact's measurement (``entry``), or why it was not measured (``not_measured``)."""

    artifact: Artifact
    entry: Optional[Dict[str, Any]] = None
    not_measured: Optional[str] = None
    failed: List[Dict[str, Any]] = field(default_factory=list)


@dataclass
class Settings:
    batches: Sequence[int]
    threads: int
    window_s: float
    stability_pct: float
    max_seconds: float


def find_artifacts(root: Path, variant: str, source: Optional[str], targets: Optional[Sequence[str]],
                   precisions: Optional[Sequence[str]]) -> List[Artifact]:
    """The complete artifacts of ``variant`` under ``root`` that match the filters, sorted."""
    from zoo.results import artifact_folders, load_manifest

    found = []
    for folder, problem in artifact_folders(root):
        if problem is not None or folder.parent.parent.parent.name != variant:
            continue
        m, _ = load_manifest(folder)
        if m is None:
            continue
        if (source and m["source"] != source) or (targets and m["target"] not in targets) or (
                precisions and m["precision"] not in precisions):
            continue
        found.append(Artifact(folder, m))
    return found


def input_shape(artifact: Artifact) -> List[int]:
    """One image as the artifact takes it (CHW or HWC), from the registry's preprocessing."""
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, artifact.manifest["variant"])
    spec = effective_input(v, select_weights(reg, v, artifact.manifest["source"], artifact.manifest["tag"]))
    return [3, spec.size, spec.size] if spec.layout.value == "NCHW" else [spec.size, spec.size, 3]


def estimate_bytes(artifact: Artifact, batch: int, shape: Sequence[int]) -> int:
    side = max(shape)
    per_image = 4 * 256 * (side // 4) ** 2 * ACTIVATION_COPIES
    return RUNTIME_BYTES + WEIGHT_COPIES * artifact.weight_bytes() + batch * per_image


def runnable(artifact: Artifact) -> Optional[str]:
    """Why the artifact cannot be timed here, or None."""
    from zoo.targets import get_target
    from zoo.targets.base import Target

    a = artifact.manifest["artifact"]
    if not a.get("compiled"):
        return f"a build kit ({a.get('compiler')}): no engine was built here to time"
    try:
        target = get_target(artifact.target)
    except UserError as e:
        return str(e)
    if type(target).native_session is Target.native_session:
        return f"target {artifact.target} has no runtime on this machine"
    return None


def _worker_env(threads: int) -> Dict[str, str]:
    """The MindIR worker's environment (this zoo importable, MindSpore's log quiet), with the thread count."""
    from zoo.targets.mindir import worker_env

    env = worker_env()
    env["OMP_NUM_THREADS"] = str(threads)  # MindSpore's CPU kernels (and any OpenMP runtime) read it
    return env


def _tail(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def measure_point(artifact: Artifact, batch: int, shape: Sequence[int], s: Settings) -> Dict[str, Any]:
    """Run the worker for one point; its result, or ``{"ok": False, "reason": ...}``."""
    request = {"target": artifact.target, "primary": str(artifact.folder / artifact.manifest["artifact"]["primary"]),
               "precision": artifact.precision, "threads": s.threads, "batch": batch, "shape": list(shape),
               "window_s": s.window_s, "stability_pct": s.stability_pct, "max_seconds": s.max_seconds}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        path = Path(tmp) / "request.json"
        path.write_text(json.dumps(request))
        try:
            proc = subprocess.run([sys.executable, "-m", "zoo.bench.worker", str(path)], capture_output=True,
                                  text=True, env=_worker_env(s.threads), timeout=s.max_seconds * 2 + 300)
        except subprocess.TimeoutExpired:
            return {"ok": False, "reason": f"the worker did not finish in {s.max_seconds * 2 + 300:.0f} s"}
    if proc.returncode != 0:
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"ok": False, "reason": f"the runtime failed ({how}): {_tail(proc.stderr)}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "reason": f"the worker printed no result: {_tail(proc.stderr)}"}


def bench_artifact(artifact: Artifact, s: Settings, fingerprint: Dict[str, Any],
                   say: Callable[[str], None]) -> Outcome:
    why = runnable(artifact)
    if why is not None:
        return Outcome(artifact, not_measured=why)
    shape = input_shape(artifact)
    batches = [artifact.static_batch] if artifact.static_batch else list(s.batches)
    budget = int(machine.available_memory() * MEMORY_FRACTION)
    points, skipped, failed, runtime = [], [], [], None
    for batch in batches:
        need = estimate_bytes(artifact, batch, shape)
        if need > budget:
            skipped.append({"batch": batch, "reason": f"needs about {need / 2**30:.1f} GiB; {budget / 2**30:.1f} GiB "
                                                      f"is available here"})
            say(f"  batch {batch:>4}: skipped, needs about {need / 2**30:.1f} GiB of {budget / 2**30:.1f} GiB available")
            continue
        say(f"  batch {batch:>4}: measuring ...")
        got = measure_point(artifact, batch, shape, s)
        if not got.get("ok"):
            failed.append({"batch": batch, "reason": got["reason"]})
            say(f"  batch {batch:>4}: failed: {got['reason']}")
            continue
        p = got["point"]
        p.update(peak_rss_mb=got["peak_rss_mb"], estimate_mb=round(need / 2**20, 1))
        points.append(p)
        runtime = got["runtime"]
        say(f"  batch {batch:>4}: {p['throughput']:.1f} img/s  p50 {p['latency_ms']['p50']:.1f} ms  "
            f"p99 {p['latency_ms']['p99']:.1f} ms  ({'stable' if p['stable'] else 'NOT stable'}, "
            f"{len(p['windows'])} windows)")
    if not points:
        reasons = "; ".join(f"batch {x['batch']}: {x['reason']}" for x in skipped + failed)
        return Outcome(artifact, not_measured=f"no batch could be measured ({reasons})", failed=failed)
    entry = {"machine": fingerprint, "runtime": runtime, "threads": s.threads,
             "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "settings": {"window_s": s.window_s, "stability_pct": s.stability_pct, "max_seconds": s.max_seconds},
             "artifact_key": artifact.manifest.get("key"), "points": points, "skipped": skipped + failed}
    return Outcome(artifact, entry=entry, failed=failed)


def record(outcome: Outcome) -> bool:
    """Put the entry into the artifact's manifest (re-read under the artifact's lock, written atomically).
    False when the artifact was rebuilt meanwhile: its figures would describe another build."""
    from zoo.store import MANIFEST, artifact_lock, read_manifest, write_json

    folder = outcome.artifact.folder
    with artifact_lock(folder):
        m = read_manifest(folder)
        if m is None or m.get("key") != outcome.entry["artifact_key"]:
            return False
        m.setdefault("bench", {})[outcome.entry["machine"]["id"]] = outcome.entry
        write_json(folder / MANIFEST, m)
        outcome.artifact.manifest = m
    return True


def bench(artifacts: Sequence[Artifact], s: Settings, say: Callable[[str], None]) -> List[Outcome]:
    fingerprint = machine.describe()
    out = []
    for i, a in enumerate(artifacts, 1):
        say(f"[bench {i}/{len(artifacts)}] {a.label}  ({a.folder})")
        outcome = bench_artifact(a, s, fingerprint, say)
        if outcome.entry is not None and not record(outcome):
            outcome.not_measured = "rebuilt while it was measured; run bench again"
            outcome.entry = None
        elif outcome.not_measured and not outcome.failed:
            say(f"  not measured: {outcome.not_measured}")
        out.append(outcome)
    return out


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
