"""Source checkpoint -> canonical ONNX (validated, shared) -> target artifact (validated) -> manifest.

The canonical stage (``zoo.build.canonical``) is built once per (variant, source, weights, export
spec) and reused by every target. The target stage runs the target's prepare / compile / load, the
optional accuracy gate, parity of the artifact against the canonical ONNX and the target's own checks,
and writes the manifest last, in a staging folder swapped in atomically. Nothing here knows any
particular target.
"""
from __future__ import annotations

import errno
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Dict, List, Optional

from zoo.build import canonical as canonical_stage
from zoo.build.request import ConvertRequest, Result, ZOO_VERSION, all_tools, artifact_folder_name, request_key
from zoo.build.source_checks import fp32_bytes
from zoo.build.target_checks import check_target
from zoo.calibration import CalibrationSet
from zoo.converters import disk
from zoo.converters.sources import check_convertible, native_network
from zoo.converters.stages import StageMeter
from zoo.registry.query import effective_input
from zoo.status import FAILED, checks_passed, status_of
from zoo.store import (MANIFEST, artifact_dir, artifact_lock, cache_hit, read_manifest, sha256_of, staged,
                       tool_versions, write_json)
from zoo.targets.base import Target, TargetJob


def convert(req: ConvertRequest) -> Result:
    """Build (or find in the store) the artifact ``req`` asks for; raises ValidationFailed in strict mode."""
    if req.store_url:  # object storage: built here, then uploaded (zoo.remote.artifacts)
        from zoo.remote import artifacts as remote

        return remote.convert(req, convert)
    from zoo.targets import get_target

    check_convertible(req.weights.source)
    target = get_target(req.target)
    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    key = request_key(req)
    if not req.force:
        hit = cache_hit(folder, key)
        if hit is not None:
            return Result(hit, folder, True)
    # Two jobs asked for the same artifact at once: the second waits, then finds the first's result.
    with artifact_lock(folder, announce=req.progress):
        if not req.force:
            hit = cache_hit(folder, key)
            if hit is not None:
                return Result(hit, folder, True)
        try:
            return _build(req, target, folder, key)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            # Another job or program took the space after the check; the staging folder is gone already.
            raise disk.NotEnoughDisk(f"the disk filled up while converting {req.variant.name} -> {req.target} "
                                     f"{req.precision} into {folder.parent}; free some space and run it again") from e


def _disk_need(req: ConvertRequest, target: Target) -> int:
    """Bytes the job holds at once: the whole conversion, or only the target's copy when the canonical
    model is already built."""
    own_copy = target.writes_own_weights(req.precision) or target.needs_state
    if canonical_stage.reusable(req, target.needs_state):
        return (fp32_bytes(req) if own_copy else 0) + disk.MARGIN
    return disk.conversion_bytes(fp32_bytes(req), own_copy or req.keep_state)


def failed_copy(folder: Path) -> Path:
    """Where a failed rebuild goes while ``folder`` keeps an artifact that passed (or a kit)."""
    return folder.with_name(f".{folder.name}.failed")


def _build(req: ConvertRequest, target: Target, folder: Path, key: str) -> Result:
    timer = StageMeter(verbose=req.progress)
    status = FAILED
    landed: List[Path] = []

    def destination(stage: Path) -> Path:
        # a failed rebuild never replaces a good artifact: it is kept beside it, hidden, for inspection
        previous = read_manifest(folder)
        keep = status == FAILED and previous is not None and checks_passed(str(previous.get("status")))
        landed.append(failed_copy(folder) if keep else folder)
        return landed[0]

    with staged(folder, destination) as stage:
        disk.require_free(stage, _disk_need(req, target), f"{req.variant.name} -> {req.target} {req.precision}")
        work = stage / ".work"
        work.mkdir()
        canon = canonical_stage.obtain(req, work, timer, target.needs_state)
        golden_files: List[Path] = []
        if req.golden:
            from zoo.golden import write_golden

            golden_files = write_golden(stage, {n: x for n, (x, _) in canon.references.items()},
                                        {n: r for n, (_, r) in canon.references.items()}, {
                "variant": req.variant.name, "source": req.weights.source, "tag": req.weights.tag,
                "output": req.weights.output.value, "seed": req.seed})
        checks: Dict[str, Any] = dict(canon.checks)  # a copy: the target adds its own
        job = TargetJob(
            variant=req.variant, weights=req.weights, input=effective_input(req.variant, req.weights),
            precision=req.precision, options=req.options, onnx_path=canon.onnx_path, spec=req.spec, stage=stage,
            work=work, seed=req.seed, state_path=canon.state_path, calibration=CalibrationSet(req.calib_data, req.seed),
            calib_data=req.calib_data, progress=req.progress,
            native_network=partial(native_network, req.weights),  # imports the adapter only when asked
            parity_sets={n: x for n, (x, _) in canon.references.items()},
        )
        with timer("prepare"):
            prepared = target.prepare(job)
        with timer("compile"):
            built = target.compile(job, prepared)
        if req.accuracy is not None:
            from zoo.converters.accuracy_gate import gate
            from zoo.ort_session import runner as ort_runner

            built, checks["accuracy_control"] = gate(
                req.accuracy, target, job, built,
                ort_runner(canon.onnx_path, None if req.spec.dynamic_batch else req.spec.batch), timer)
        checks["target"] = check_target(target, job, built, canon.references, canon.outputs, timer)
        checks["passed"] = (checks["passed"] and checks["target"]["passed"]
                            and checks.get("accuracy_control", {}).get("passed") is not False)
        description = target.describe(job, built)
        shutil.rmtree(work)
        status = status_of(checks["passed"], built.compiled)
        manifest = {
            "zoo_version": ZOO_VERSION,
            "key": key,
            "status": status,
            "variant": req.variant.name,
            "source": req.weights.source,
            "tag": req.weights.tag,
            "model_name": req.weights.model_name,
            "target": req.target,
            "precision": req.precision,
            "weights": canon.record["weights"],
            "onnx": asdict(req.spec),
            "canonical": canon.manifest_entry(),
            "options": req.options,
            "calibration": job.calibration.record(built.info.get("calibration_method")) if job.calibration.used else None,
            "artifact": {
                "primary": built.primary.name,
                "files": [{"name": str(f.relative_to(stage)), "sha256": sha256_of(f), "size": f.stat().st_size}
                          for f in _ordered(built.files + golden_files, built.primary)],
                "compiled": built.compiled,
                "compiler": built.compiler,
                "commands": built.commands,
                "info": built.info,
                "summary": description,
            },
            "tools": tool_versions(all_tools(req)),
            "validation": checks,
            "timings_s": timer.stages,
            "peak_rss_mb": timer.memory(),
        }
        write_json(stage / MANIFEST, manifest)
    built_in = landed[0]
    if built_in == folder:
        shutil.rmtree(failed_copy(folder), ignore_errors=True)  # an earlier failed rebuild, now superseded
    if status == FAILED and req.strict:
        raise ValidationFailed(built_in, manifest, kept=folder if built_in != folder else None)
    return Result(manifest, built_in, False)


def _ordered(files: List[Path], primary: Path) -> List[Path]:
    """The primary file first, then the rest in a stable order."""
    rest = sorted({f for f in files if f != primary})
    return [primary, *rest]


class ValidationFailed(Exception):
    """The artifact was built but failed a hard check; its manifest says which."""

    exit_code = 1

    def __init__(self, folder: Path, manifest: Dict[str, Any], kept: Optional[Path] = None) -> None:
        v = manifest["validation"]
        failed = [k for k in ("params", "macs", "shapes", "parity", "target") if not v[k]["passed"]]
        if v.get("accuracy_control", {}).get("passed") is False:
            a = v["accuracy_control"]
            failed.append(f"int8 top-1 drop {a['drop_pp']:.2f} pp > max_drop={a['max_drop_pp']}")
        also = f"; the artifact that passed before stays in {kept}" if kept is not None else ""
        super().__init__(f"validation failed ({', '.join(failed)}); see {folder / MANIFEST}{also}")
        self.folder = folder
        self.manifest = manifest
