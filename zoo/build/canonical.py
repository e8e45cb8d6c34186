"""The validated canonical ONNX of a (variant, source, weights, export spec): built once, reused by every target.

Stages: resolve weights -> build with the source's library -> reference outputs -> export -> free the
source model -> canonicalise -> check against the registry and the source. The result is a
content-addressed folder of its own, ``<out_dir>/.canonical/<variant>/<source>/<tag>/<key[:16]>/``:

- ``model.onnx`` (and ``model.onnx.data`` above 2 GiB);
- ``parity.npz``: the seeded parity inputs, the source model's outputs and the canonical model's;
- ``state.npz`` when a target that rebuilds the network (MindIR) asked for the source's weights;
- ``canonical.json``, written last: the key, the checks, the weights record and the build's timings.

A second target with the same key links these files instead of building the source model again.
Two jobs that need the same canonical model take turns behind the same lock as artifacts.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from zoo.build.checkpoint import resolve_checkpoint
from zoo.build.request import ConvertRequest, ZOO_VERSION, canonical_key, export_spec, source_tools
from zoo.build.source_checks import check_canonical, fp32_bytes, is_large, run_source
from zoo.converters.stages import StageMeter, release_memory
from zoo.registry.query import effective_input
from zoo.store import (
    CANONICAL_DIR as CACHE_DIR, CANONICAL_RECORD as RECORD, artifact_dir, artifact_lock, atomic_file, staged,
    tool_versions, write_json,
)

PARITY = "parity.npz"
STATE = "state.npz"
MODEL = "model.onnx"


@dataclass
class Canonical:
    """A validated canonical ONNX, linked into a job's work folder."""

    key: str
    record: Dict[str, Any]  # canonical.json
    onnx_path: Path  # the job's own hard link to the model
    references: Dict[str, Tuple[Any, Any]]  # parity set -> (inputs, the source model's outputs)
    outputs: Dict[str, Any]  # parity set -> the canonical model's outputs
    state_path: Optional[Path]  # the source's weights under canonical names, when asked for
    reused: bool  # True: built by an earlier job

    @property
    def checks(self) -> Dict[str, Any]:
        return self.record["checks"]

    def manifest_entry(self) -> Dict[str, Any]:
        """What a target's manifest says about the canonical model it came from."""
        r = self.record
        return {"key": self.key, "folder": r["folder"], "reused": self.reused, "simplify": r["simplify"],
                "external_data": r["external_data"], "built_in_s": round(sum(r["timings_s"].values()), 3)}


def cache_folder(req: ConvertRequest, key: str) -> Path:
    return artifact_dir(Path(req.out_root) / CACHE_DIR, req.variant.name, req.weights.source, req.weights.tag, key[:16])


def reusable(req: ConvertRequest, needs_state: bool) -> bool:
    """Whether a passed canonical model for ``req`` is already there (nothing loaded)."""
    key = canonical_key(req)
    return not req.force and _usable(cache_folder(req, key), key, needs_state) is not None


def obtain(req: ConvertRequest, work: Path, timer: StageMeter, needs_state: bool) -> Canonical:
    """The canonical model for ``req``, from the cache or built now, hard-linked into ``work``."""
    key = canonical_key(req)
    folder = cache_folder(req, key)
    with artifact_lock(folder, announce=req.progress):
        record = None if req.force else _usable(folder, key, needs_state=False)
        if record is not None and needs_state and not record.get("state"):
            record = _add_state(req, folder, record, timer)
        reused = record is not None
        if record is None:
            record = _build(req, folder, key, timer, needs_state or req.keep_state)
        with timer("canonical-link"):
            return _link(folder, record, work, key, reused, needs_state)


def _add_state(req: ConvertRequest, folder: Path, record: Dict[str, Any], timer: StageMeter) -> Optional[Dict[str, Any]]:
    """The source's weights for a target that rebuilds the network (MindIR), added to a canonical model
    built without them: the source model is built again, and kept only if it reproduces the stored source
    outputs on the stored parity inputs (the same weights). None: it did not; the caller rebuilds it all."""
    import numpy as np

    from zoo.converters.sources import get_adapter

    with timer("import"):
        adapter = get_adapter(req.weights.source)
    scratch = Path(tempfile.mkdtemp(prefix=".state-", dir=folder))
    try:
        checkpoint, _ = resolve_checkpoint(req, adapter, scratch, timer)
        with timer("build"):
            model = adapter.build(req.variant, req.weights, checkpoint)
        with timer("reference"), np.load(folder / PARITY) as z:
            per = 1 if is_large(req) else None
            for name in record["checks"]["parity"]["sets"]:
                ref = z[f"source/{name}"]
                got = run_source(adapter, model, z[f"inputs/{name}"], per)
                if not np.allclose(got, ref, rtol=0, atol=1e-5 * max(float(np.abs(ref).max()), 1e-6)):
                    return None
        with atomic_file(folder / STATE) as f:
            np.savez(f, **adapter.canonical_state(model))
        del model
        release_memory(fp32_bytes(req))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    record = {**record, "state": True, "files": {**record["files"], STATE: (folder / STATE).stat().st_size}}
    write_json(folder / RECORD, record)
    return record


def _usable(folder: Path, key: str, needs_state: bool) -> Optional[Dict[str, Any]]:
    """The record of a complete, passed canonical build with this key (and the state, if needed)."""
    import json

    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != key or not record.get("checks", {}).get("passed"):
        return None
    if needs_state and not record.get("state"):
        return None  # rebuilt with the state: the source model is needed once more
    for name, size in record.get("files", {}).items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != size:
            return None
    return record


def _link(folder: Path, record: Dict[str, Any], work: Path, key: str, reused: bool, needs_state: bool) -> Canonical:
    import numpy as np

    from zoo.store import link_or_copy
    from zoo.targets.kit import copy_onnx

    own = work / "canonical"
    own.mkdir(parents=True, exist_ok=True)
    onnx_path = copy_onnx(folder / MODEL, own / MODEL)
    state = None
    if needs_state:
        state = own / STATE
        link_or_copy(folder / STATE, state)
    with np.load(folder / PARITY) as z:
        sets = list(record["checks"]["parity"]["sets"])  # the order the source was checked in
        references = {n: (z[f"inputs/{n}"], z[f"source/{n}"]) for n in sets}
        outputs = {n: z[f"canonical/{n}"] for n in sets}
    return Canonical(key, record, onnx_path, references, outputs, state, reused)


def _build(req: ConvertRequest, folder: Path, key: str, timer: StageMeter, needs_state: bool) -> Dict[str, Any]:
    import numpy as np

    from zoo.converters import disk, onnx_canonical
    from zoo.converters.sources import get_adapter
    from zoo.validators.inputs import parity_inputs

    spec = export_spec(req.spec)
    with timer("import"):
        adapter = get_adapter(req.weights.source)
    before = dict(timer.stages)
    with staged(folder) as stage:
        disk.require_free(stage, disk.conversion_bytes(fp32_bytes(req), needs_state),
                          f"{req.variant.name} from {req.weights.source} -> canonical ONNX")
        work = stage / ".work"
        work.mkdir()
        checkpoint, weights_info = resolve_checkpoint(req, adapter, work, timer)
        spec_in = effective_input(req.variant, req.weights)
        with timer("build"):
            model = adapter.build(req.variant, req.weights, checkpoint)
        with timer("reference"):
            inputs = parity_inputs(spec_in, seed=req.seed)
            per = 1 if is_large(req) else None  # the giants: batch 1, so activations stay small too
            references = {name: (x, run_source(adapter, model, x, per)) for name, x in inputs.items()}
        (work / "raw").mkdir()
        raw = work / "raw" / MODEL  # its own folder: exporters may write external data beside it
        with timer("export"):
            adapter.export_onnx(model, raw, spec, spec_in.size)
        if needs_state:
            np.savez(stage / STATE, **adapter.canonical_state(model))
        del model  # give the source model's memory back before ONNX Runtime loads the canonical one
        release_memory(fp32_bytes(req))
        if weights_info["mode"] == "random":
            checkpoint.unlink()  # our own fresh init, now in the raw export: its disk goes to the canonical copy
        with timer("canonicalise"):
            made = onnx_canonical.finish(raw, stage / MODEL, spec, spec_in.size, _metadata(req, weights_info))
        shutil.rmtree(work)
        with timer("validate"):
            checks, outputs = check_canonical(req, stage / MODEL, references)
        with atomic_file(stage / PARITY) as f:
            np.savez(f, **{f"inputs/{n}": x for n, (x, _) in references.items()},
                     **{f"source/{n}": r for n, (_, r) in references.items()},
                     **{f"canonical/{n}": o for n, o in outputs.items()})
        files = [p for p in stage.iterdir() if p.is_file()]
        record = {
            "zoo_version": ZOO_VERSION,
            "key": key,
            "folder": str(folder.relative_to(req.out_root)),
            "variant": req.variant.name, "source": req.weights.source, "tag": req.weights.tag,
            "onnx": asdict(spec),
            "seed": req.seed,
            "weights": weights_info,
            "simplify": made.simplify,
            "external_data": len(made.files) > 1,
            "state": needs_state,
            "checks": checks,
            "tools": tool_versions(source_tools(req.weights.source)),
            "files": {p.name: p.stat().st_size for p in files},
            "timings_s": {k: round(v - before.get(k, 0.0), 3) for k, v in timer.stages.items()
                          if v != before.get(k)},
        }
        write_json(stage / RECORD, record)  # last: a record means a complete folder
    return record


def _metadata(req: ConvertRequest, weights_info: Dict[str, Any]) -> Dict[str, object]:
    """The canonical model's metadata_props: what it is, how to feed it, what it returns."""
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
