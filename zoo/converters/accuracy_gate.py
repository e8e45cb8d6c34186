"""Accuracy-aware int8: top-1 of the int8 artifact against the canonical fp32 model on labelled images,
and a hard gate on the drop.

The images are read as `zoo validate` reads them (the same layouts, the same decoding, the
registry's preprocessing), once, into memory: NNCF's accuracy control runs the set many times.
When the drop exceeds ``max_drop`` the target returns its most sensitive layers to float
(``Target.restore_accuracy``); the result is measured here again, and a drop still too large
fails the build (NNCF itself would only warn).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from zoo.errors import UserError
from zoo.registry.schema import InputSpec
from zoo.targets.base import Runner
from zoo.targets.nncf_quantize import Labelled

MAX_BYTES = 4 << 30  # preprocessed images held at once; beyond it, ask for limit=
EVAL_CHUNK = 16


@dataclass
class AccuracyRequest:
    data: Path
    max_drop: Optional[float]  # percentage points; None: measure and record only
    limit: Optional[int] = None  # a seeded, class-stratified subset of this many images
    max_float_layers: Optional[int] = None  # at most this many layers go back to float


def load_labelled(data: Path, limit: Optional[int], seed: int, spec: InputSpec,
                  num_classes: int) -> Tuple[Labelled, Dict[str, Any]]:
    """The labelled images, preprocessed, and a record of which subset they are."""
    from zoo.data.dataset import check_labels, open_dataset, stratified_subset
    from zoo.data.decode import load_rgb
    from zoo.preprocess import preprocess

    ds = open_dataset(data)
    check_labels(ds, num_classes)
    samples = ds.samples if limit is None else stratified_subset(ds.samples, limit, seed)
    need = len(samples) * 3 * spec.size * spec.size * 4
    if need > MAX_BYTES:
        raise UserError(f"data={data}: {len(samples)} images would hold {need / 2**30:.1f} GiB preprocessed; "
                        f"give limit=N (a seeded, class-stratified subset, e.g. limit=300)")
    arrays, labels, skipped = [], [], 0
    for s in samples:
        img, _reason = load_rgb(s.path)
        if img is None:
            skipped += 1
            continue
        arrays.append(preprocess(img, spec)[None])
        labels.append(s.label)
    if not arrays:
        raise UserError(f"data={data}: none of its {len(samples)} images could be read")
    subset = {"data": str(ds.root), "layout": ds.layout, "images_in_set": len(ds.samples), "images": len(arrays),
              "skipped": skipped, "limit": limit, "seed": seed, "classes": len(set(labels))}
    return Labelled(arrays, labels), subset


def top1(run: Runner, labelled: Labelled) -> float:
    """Top-1 in percent."""
    hits = 0
    for i in range(0, len(labelled.arrays), EVAL_CHUNK):
        x = np.concatenate(labelled.arrays[i:i + EVAL_CHUNK])
        hits += int((np.argmax(run(x), axis=1) == np.asarray(labelled.labels[i:i + EVAL_CHUNK])).sum())
    return 100.0 * hits / len(labelled.arrays)


def float_layers_of(built) -> Optional[list]:
    """The compute layers an int8 artifact runs in float, where the target said (NNCF's summary)
    or where its ONNX can be read."""
    if "float_layers" in built.info:
        return list(built.info["float_layers"])
    if built.primary.suffix == ".onnx":
        import onnx

        from zoo.targets.nncf_quantize import float_layers

        return float_layers(onnx.load(str(built.primary), load_external_data=False))
    return None


def gate(acc: AccuracyRequest, target, job, built, fp32_run: Runner, timer) -> Tuple[Any, Dict[str, Any]]:
    """Measure, restore layers to float where needed, measure again; returns the (possibly rebuilt)
    artifact and the manifest's ``accuracy_control`` record."""
    with timer("accuracy-data"):
        labelled, subset = load_labelled(acc.data, acc.limit, job.seed, job.input, job.variant.arch.num_classes)
    with timer("accuracy-fp32"):
        fp32 = top1(fp32_run, labelled)
    with timer("accuracy-int8"):
        int8 = top1(target.load(job, built), labelled)
    record: Dict[str, Any] = {"subset": subset, "fp32_top1": fp32, "first_int8_top1": int8,
                              "max_drop_pp": acc.max_drop, "restored": False,
                              "first_float_layers": float_layers_of(built)}
    if acc.max_drop is not None and fp32 - int8 > acc.max_drop:
        with timer("accuracy-restore"):
            built = target.restore_accuracy(job, built, labelled, acc.max_drop, acc.max_float_layers)
        with timer("accuracy-int8"):
            int8 = top1(target.load(job, built), labelled)
        record["restored"] = True
    drop = fp32 - int8
    record.update(int8_top1=int8, drop_pp=drop, float_layers=float_layers_of(built),
                  method=built.info.get("calibration_method"),
                  passed=None if acc.max_drop is None else drop <= acc.max_drop + 1e-9)
    return built, record
