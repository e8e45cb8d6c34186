"""Source checkpoint -> canonical ONNX -> target artifact, validated, with a manifest.

Stages: resolve weights (fetch / own file / fresh init) -> build with the source's library ->
reference outputs -> export -> free the source model -> canonicalise -> validate against the source ->
the target's prepare / compile / load -> parity of the artifact against the canonical ONNX and the
target's own checks -> write atomically. Nothing here knows any particular target.
"""
from __future__ import annotations

import errno
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from zoo.calibration import CalibrationSet
from zoo.converters.accuracy_gate import AccuracyRequest
from zoo.converters.disk import NotEnoughDisk, conversion_bytes, require_free
from zoo.converters.spec import OnnxSpec
from zoo.converters.stages import StageMeter, release_memory
from zoo.converters.sources import TOOLS, check_convertible
from zoo.registry.arch_stats import MAC_CONVENTION, arch_stats
from zoo.registry.query import effective_input
from zoo.registry.schema import Variant, Weights
from zoo.targets.base import TargetJob
from zoo.store import (
    MANIFEST, artifact_dir, artifact_lock, artifact_key, cache_hit, sha256_of, staged, tool_versions, write_json,
)

ZOO_VERSION = "0.1.0"


@dataclass
class ConvertRequest:
    variant: Variant
    weights: Weights
    spec: OnnxSpec
    target: str = "onnx"
    precision: str = "fp32"
    options: Dict[str, Any] = field(default_factory=dict)  # conf/target/<target>.yaml, overrides applied
    calib_data: Optional[Path] = None  # a folder of calibration images (default: seeded generated ones)
    golden: bool = False  # store golden inputs and the source's outputs with the artifact
    accuracy: Optional[AccuracyRequest] = None  # int8: top-1 against fp32 on labelled data, gated by max_drop
    weights_mode: str = "pretrained"  # pretrained | random | file
    weights_file: Optional[Path] = None
    seed: int = 0
    offline: bool = False
    cache_dir: Optional[Path] = None
    mirror: Optional[Path] = None  # read pretrained weights from this local mirror instead of the network
    out_root: Path = Path("artifacts")
    force: bool = False
    strict: bool = True
    progress: bool = True


@dataclass
class Result:
    manifest: Dict[str, Any]
    folder: Path
    cache_hit: bool


def weights_identity(req: ConvertRequest) -> Dict[str, Any]:
    """What identifies the weights without reading them (cheap, for the cache-hit check)."""
    w = req.weights
    if req.weights_mode == "random":
        return {"mode": "random", "seed": req.seed}
    if req.weights_mode == "file":
        return {"mode": "file", "sha256": sha256_of(req.weights_file)}
    return {"mode": "pretrained", "origin": w.hf_hub_id or w.url, "sha256": w.sha256, "sha256_prefix": w.sha256_prefix}


def request_key(req: ConvertRequest) -> str:
    return artifact_key({
        "zoo": ZOO_VERSION,
        "variant": asdict(req.variant),
        "weights_entry": asdict(req.weights),
        "weights": weights_identity(req),
        "spec": asdict(req.spec),
        "target": req.target,
        "precision": req.precision,
        "options": req.options,
        "calib_data": _tree_identity(req.calib_data) if req.calib_data else None,
        "golden": req.golden,
        "accuracy": _accuracy_identity(req.accuracy),
        "tools": tool_versions(_tools(req)),
    })


def _tools(req: ConvertRequest) -> List[str]:
    from zoo.targets import TOOLS as TARGET_TOOLS

    return TOOLS[req.weights.source] + [t for t in TARGET_TOOLS.get(req.target, []) if t not in TOOLS[req.weights.source]]


def _tree_identity(root: Path) -> List[Any]:
    """Names, sizes and mtimes of a calibration folder: a changed set rebuilds the int8 artifact."""
    root = Path(root)
    return sorted([str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)]
                  for p in root.rglob("*") if p.is_file())


def _accuracy_identity(acc) -> Optional[Dict[str, Any]]:
    if acc is None:
        return None
    return {"data": _tree_identity(acc.data), "max_drop": acc.max_drop, "limit": acc.limit,
            "max_float_layers": acc.max_float_layers}


def artifact_folder_name(target: str, precision: str) -> str:
    """``onnx`` for the canonical fp32 model; ``<target>-<precision>`` for everything else."""
    return target if precision == "fp32" else f"{target}-{precision}"


def _resolve_checkpoint(req: ConvertRequest, adapter, workdir: Path, timer: StageMeter) -> tuple[Path, Dict[str, Any]]:
    """The checkpoint file to load, and how it was obtained (for the manifest)."""
    w = req.weights
    if req.weights_mode == "file":
        return req.weights_file, {"mode": "file", "path": str(req.weights_file), "sha256": sha256_of(req.weights_file)}
    if req.weights_mode == "random":
        # A fresh init saved in the source's own format, then loaded back like any checkpoint:
        # the dry run exercises the real loading path.
        with timer("init"):
            model = adapter.fresh(req.variant, w, req.seed)
            path = workdir / f"random-seed{req.seed}{adapter.checkpoint_suffix}"
            adapter.save_checkpoint(model, path)
            del model
            release_memory()
        return path, {"mode": "random", "seed": req.seed, "sha256": sha256_of(path),
                      "note": "freshly initialised weights; accuracy checks do not apply"}
    from zoo.fetch import fetch, request_for

    # Where the bytes came from (network or mirror) is not part of weights_identity: they are verified by hash.
    with timer("fetch"):
        got = fetch(request_for(w), cache_dir=req.cache_dir, offline=req.offline, progress=req.progress,
                    mirror=req.mirror)
    info = {"mode": "pretrained", "origin": got.origin, "sha256": got.sha256, "size": got.size,
            "cache_hit": got.cache_hit}
    if got.mirror is not None:
        info["mirror"] = str(got.mirror)
    return got.path, info


def _metadata(req: ConvertRequest, weights_info: Dict[str, Any]) -> Dict[str, object]:
    from zoo.labels import imagenet_labels

    spec = effective_input(req.variant, req.weights)
    pre = asdict(spec)
    pre.update(interpolation=spec.interpolation.value, color=spec.color.value, layout=spec.layout.value,
               resize=spec.resize_short())
    labels = imagenet_labels() if req.variant.arch.num_classes == 1000 else []
    return {
        "zoo.variant": req.variant.name,
        "zoo.source": req.weights.source,
        "zoo.tag": req.weights.tag,
        "zoo.model_name": req.weights.model_name,
        "zoo.weights_sha256": weights_info["sha256"],
        "zoo.weights_mode": weights_info["mode"],
        "zoo.output": req.weights.output.value,
        "zoo.preprocessing": pre,
        "zoo.labels": labels,
        "zoo.license": req.weights.license,
    }


def _validate(req: ConvertRequest, onnx_path: Path, references: Dict[str, Any]) -> tuple[Dict[str, Any], Dict[str, Any]]:
    """Structure and parity of the canonical ONNX against the registry and the source model.

    Returns the checks and the canonical model's outputs on each parity set (the reference the
    target artifact is compared with)."""
    import onnx
    import onnxruntime as ort

    from zoo.converters import onnx_canonical
    from zoo.validators.numerics import compare
    from zoo.validators.structure import analyse, check_shapes

    v, w = req.variant, req.weights
    size = effective_input(v, w).size
    expected = arch_stats(v.arch, size)
    s = analyse(onnx.load(str(onnx_path), load_external_data=False))
    checks: Dict[str, Any] = {}
    checks["params"] = {"graph": s.params, "architecture": expected.params, "passed": s.params == expected.params,
                        "published": _published_params(w, s.params)}
    checks["macs"] = {"graph": s.macs, "architecture": expected.macs, "passed": s.macs == expected.macs,
                      "convention": MAC_CONVENTION, "published": _published_macs(w, s.macs)}
    problems = check_shapes(s, size, v.arch.num_classes, None if req.spec.dynamic_batch else req.spec.batch)
    checks["shapes"] = {"input": [s.input_name, s.input_shape], "output": [s.output_name, s.output_shape],
                        "problems": problems, "passed": not problems}
    options = ort.SessionOptions()
    if onnx_path.with_name(onnx_canonical.external_data_name(onnx_path)).exists():
        # The full optimisation level's NCHWc layout pass copies every weight: on a 3 GiB model it
        # lifts the session's peak from 1.4x to 2.7x the weight bytes (measured). Basic still folds.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    parity, outputs = {}, {}
    batch = None if req.spec.dynamic_batch else req.spec.batch
    if batch is None and _is_large(req):
        batch = 1
    for name, (x, ref) in references.items():
        outputs[name] = run_batched(sess, s.input_name, x, batch)
        parity[name] = compare(ref, outputs[name], "fp32").as_dict()
    del sess
    release_memory()
    checks["parity"] = {"runtime": f"onnxruntime {ort.__version__} CPU", "precision": "fp32", "batch": batch, "sets": parity,
                        "passed": all(p["passed"] for p in parity.values())}
    checks["accuracy"] = {"skipped": "weights=random" if req.weights_mode == "random" else "no dataset given"}
    checks["passed"] = all(checks[k]["passed"] for k in ("params", "macs", "shapes", "parity"))
    return checks, outputs


def _check_target(target, job, built, references: Dict[str, Any], canonical_out: Dict[str, Any],
                  timer: StageMeter) -> Dict[str, Any]:
    """The artifact against the canonical ONNX (where it runs here) and the target's own kit checks."""
    from zoo.validators.numerics import compare, gated, set_passes

    result: Dict[str, Any] = {"checks": [c.as_dict() for c in built.checks]}
    runner = None
    if "parity_skipped" not in built.info:
        with timer("target-load"):
            runner = target.load(job, built)
    if runner is None:
        result["parity"] = {"skipped": built.info.get("parity_skipped", f"no {target.name} runtime here")}
        parity_ok = True
    else:
        sets = {}
        with timer("target-parity"):
            for name, (x, _) in references.items():
                sets[name] = compare(canonical_out[name], runner(x), job.precision, job.weights.output.value).as_dict()
                sets[name]["gated"] = gated(job.precision, name)
        result["parity"] = {"against": "canonical ONNX on ONNX Runtime", "precision": job.precision, "sets": sets}
        parity_ok = all(set_passes(job.precision, n, p) for n, p in sets.items())
        del runner
    result["passed"] = parity_ok and all(c.passed for c in built.checks)
    return result


def _fp32_bytes(req: ConvertRequest) -> int:
    """The variant's weights in fp32, from the registry's size field."""
    from zoo.registry.loader import size_of

    return (req.variant.size or size_of(req.variant.arch)).fp32_bytes


def _is_large(req: ConvertRequest) -> bool:
    """Weights over protobuf's 2 GiB limit in fp32: the external-data path (the WSL 32x48d)."""
    from zoo.converters.onnx_canonical import PROTOBUF_LIMIT

    return _fp32_bytes(req) >= PROTOBUF_LIMIT


def _run_source(adapter, model, x, batch: Optional[int]):
    import numpy as np

    if batch is None:
        return adapter.run(model, x)
    return np.concatenate([adapter.run(model, x[i:i + batch]) for i in range(0, len(x), batch)])


def run_batched(sess, input_name: str, x, batch: Optional[int]):
    """Run ``x`` through a session; a static-batch model gets chunks of its batch, the last one padded."""
    import numpy as np

    if batch is None:
        return sess.run(None, {input_name: x})[0]
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        outs.append(sess.run(None, {input_name: chunk})[0][: batch - pad])
    return np.concatenate(outs)


def _published_params(w: Weights, measured: int) -> List[Dict[str, Any]]:
    out = []
    for p in w.published:
        value = p.params if p.params is not None else (p.params_m * 1e6 if p.params_m is not None else None)
        if value is None:
            continue
        out.append({"value": value, "relative_diff": round((measured - value) / value, 5),
                    "doc": p.provenance.doc, "table": p.provenance.table, "disputed": list(p.disputed)})
    return out


def _published_macs(w: Weights, measured: int) -> List[Dict[str, Any]]:
    out = []
    for p in w.published:
        for field_name, convention in (("macs_g", "MACs"), ("flops_g", "FLOPs as published")):
            value = getattr(p, field_name)
            if value is not None:
                out.append({"value_g": value, "convention": convention,
                            "relative_diff": round((measured / 1e9 - value) / value, 4),
                            "doc": p.provenance.doc, "table": p.provenance.table})
    return out


def convert(req: ConvertRequest) -> Result:
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
            raise NotEnoughDisk(f"the disk filled up while converting {req.variant.name} -> {req.target} "
                                f"{req.precision} into {folder.parent}; free some space and run it again") from e


def _build(req: ConvertRequest, target, folder: Path, key: str) -> Result:
    from zoo.converters.sources import get_adapter

    timer = StageMeter(verbose=req.progress)
    with timer("import"):
        adapter = get_adapter(req.weights.source)
    with staged(folder) as stage:
        third_copy = target.writes_own_weights(req.precision) or target.needs_state
        require_free(stage, conversion_bytes(_fp32_bytes(req), third_copy),
                     f"{req.variant.name} -> {req.target} {req.precision}")
        work = stage / ".work"
        work.mkdir()
        checkpoint, weights_info = _resolve_checkpoint(req, adapter, work, timer)
        spec_in = effective_input(req.variant, req.weights)
        with timer("build"):
            model = adapter.build(req.variant, req.weights, checkpoint)
        with timer("reference"):
            from zoo.validators.inputs import parity_inputs

            inputs = parity_inputs(spec_in, seed=req.seed)
            per = 1 if _is_large(req) else None  # the giants: batch 1, so activations stay small too
            references = {name: (x, _run_source(adapter, model, x, per)) for name, x in inputs.items()}
        golden_files: List[Path] = []
        if req.golden:
            from zoo.golden import write_golden

            golden_files = write_golden(stage, inputs, {n: r for n, (_, r) in references.items()}, {
                "variant": req.variant.name, "source": req.weights.source, "tag": req.weights.tag,
                "output": req.weights.output.value, "seed": req.seed})
        (work / "raw").mkdir()
        raw = work / "raw" / "model.onnx"  # its own folder: exporters may write external data beside it
        with timer("export"):
            adapter.export_onnx(model, raw, req.spec, spec_in.size)
        state_path = None
        if target.needs_state:
            import numpy as np

            state_path = work / "state.npz"
            np.savez(state_path, **adapter.canonical_state(model))
        del model  # give the source model's memory back before ONNX Runtime loads the artifact
        release_memory()
        if weights_info["mode"] == "random":
            checkpoint.unlink()  # our own fresh init, now in the raw export: its disk goes to the canonical copy
        from zoo.converters import onnx_canonical

        (work / "canonical").mkdir()
        canonical = work / "canonical" / "model.onnx"
        with timer("canonicalise"):
            made = onnx_canonical.finish(raw, canonical, req.spec, spec_in.size, _metadata(req, weights_info))
        shutil.rmtree(raw.parent)
        with timer("validate"):
            checks, canonical_out = _validate(req, canonical, references)
        job = TargetJob(
            variant=req.variant, weights=req.weights, input=spec_in, precision=req.precision, options=req.options,
            onnx_path=canonical, spec=req.spec, stage=stage, work=work, seed=req.seed, state_path=state_path,
            calibration=CalibrationSet(req.calib_data, req.seed), calib_data=req.calib_data, progress=req.progress,
        )
        with timer("prepare"):
            prepared = target.prepare(job)
        with timer("compile"):
            built = target.compile(job, prepared)
        if req.accuracy is not None:
            from zoo.converters.accuracy_gate import gate
            from zoo.targets.onnx_rt import ort_runner

            built, checks["accuracy_control"] = gate(req.accuracy, target, job, built,
                                                     ort_runner(canonical, None if req.spec.dynamic_batch else req.spec.batch),
                                                     timer)
        checks["target"] = _check_target(target, job, built, references, canonical_out, timer)
        checks["passed"] = (checks["passed"] and checks["target"]["passed"]
                            and checks.get("accuracy_control", {}).get("passed") is not False)
        description = target.describe(job, built)
        shutil.rmtree(work)
        status = "passed" if checks["passed"] else "failed"
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
            "weights": weights_info,
            "onnx": asdict(req.spec),
            "canonical": {"simplify": made.simplify, "external_data": len(made.files) > 1},
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
            "tools": tool_versions(_tools(req)),
            "validation": checks,
            "timings_s": timer.stages,
            "peak_rss_mb": timer.memory(),
        }
        write_json(stage / MANIFEST, manifest)
    if status == "failed" and req.strict:
        raise ValidationFailed(folder, manifest)
    return Result(manifest, folder, False)


def _ordered(files: List[Path], primary: Path) -> List[Path]:
    """The primary file first, then the rest in a stable order."""
    rest = sorted({f for f in files if f != primary})
    return [primary, *rest]


class ValidationFailed(Exception):
    """The artifact was built but failed a hard check; its manifest says which."""

    exit_code = 1

    def __init__(self, folder: Path, manifest: Dict[str, Any]) -> None:
        v = manifest["validation"]
        failed = [k for k in ("params", "macs", "shapes", "parity", "target") if not v[k]["passed"]]
        if v.get("accuracy_control", {}).get("passed") is False:
            a = v["accuracy_control"]
            failed.append(f"int8 top-1 drop {a['drop_pp']:.2f} pp > max_drop={a['max_drop_pp']}")
        super().__init__(f"validation failed ({', '.join(failed)}); see {folder / MANIFEST}")
        self.folder = folder
        self.manifest = manifest
