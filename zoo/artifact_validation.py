"""Validation of a built artifact (or of the source model itself): top-1 / top-5 on an ImageNet-style
folder against the published figure, and the artifact against its golden outputs."""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from omegaconf import DictConfig

from zoo.build.request import ConvertRequest
from zoo.errors import UserError
from zoo.registry.schema import Weights
from zoo.status import checks_passed
from zoo.store import MANIFEST, write_json


def published_top1(w: Weights) -> Tuple[Optional[float], Optional[Dict[str, str]]]:
    """The source's own published top-1 for this checkpoint, and where it was published."""
    for p in w.published:
        if p.top1 is not None:
            return p.top1, {"doc": p.provenance.doc, "table": p.provenance.table, "row": p.provenance.row}
    return None, None


def _convert_hint(cfg: DictConfig, req) -> str:
    return (f"python -m zoo convert model={req.variant.name} source={req.weights.source} tag={req.weights.tag} "
            f"target={req.target} precision={req.precision} out_dir={cfg.out_dir}"
            + (" golden=true" if cfg.golden else ""))


@contextmanager
def _source_runner(req) -> Iterator:
    """The source framework's own model with the request's weights (pretrained, a file or random)."""
    from zoo.build.checkpoint import resolve_checkpoint
    from zoo.converters.stages import StageMeter
    from zoo.converters.sources import get_adapter

    adapter = get_adapter(req.weights.source)
    with tempfile.TemporaryDirectory(prefix="zoo-validate-") as work:
        checkpoint, _ = resolve_checkpoint(req, adapter, Path(work), StageMeter())
        model = adapter.build(req.variant, req.weights, checkpoint)
        yield lambda x: adapter.run(model, x)


def _accuracy(cfg: DictConfig, req, runner, ds) -> Dict[str, Any]:
    from zoo.data.dataset import check_labels, stratified_subset
    from zoo.evaluate import evaluate
    from zoo.registry.query import effective_input
    from zoo.scoring import judge

    check_labels(ds, req.variant.arch.num_classes)
    samples = ds.samples
    if cfg.get("limit") is not None:
        samples = stratified_subset(samples, int(cfg.limit), int(cfg.seed))
    res = evaluate(samples, effective_input(req.variant, req.weights), runner, batch=int(cfg.eval_batch),
                   workers=int(cfg.workers), progress=bool(cfg.progress))
    published, where = published_top1(req.weights)
    verdict = judge(res.top1, published, req.precision, res.n_evaluated, len(ds.samples),
                    None if cfg.get("tolerance") is None else float(cfg.tolerance))
    if req.weights_mode == "random":
        verdict.update(passed=None, reason="weights=random: the published figure does not apply")
    return {"data": str(ds.root), "layout": ds.layout, "images_in_set": len(ds.samples),
            "missing_in_label_file": len(ds.missing), "result": res.as_dict(),
            "published_top1": published, "published_in": where, "verdict": verdict}


@dataclass
class Validation:
    """What ``validate`` measured: the request, what was checked (the artifact folder or the source
    model) and the report (``accuracy`` and/or ``golden``), also written into the artifact's manifest."""

    request: ConvertRequest
    what: str
    report: Dict[str, Any]

    @property
    def failed(self) -> List[str]:
        """The checks that failed: ``accuracy`` (against the published top-1), ``golden``."""
        return [k for k, r in (("accuracy", self.report.get("accuracy", {}).get("verdict", {})),
                               ("golden", self.report.get("golden", {}))) if r.get("passed") is False]


def validate_from_config(cfg: DictConfig) -> Validation:
    """Top-1 / top-5 on ``data=`` and / or the golden check of the artifact (or of the source model with
    ``source_model=true``) that the composed config names."""
    from zoo.build.from_config import build_request

    if cfg.get("data") is None and not cfg.golden:
        raise UserError("validate needs data=/path/to/val (an ImageNet-style folder) and/or golden=true")
    if cfg.get("data") is not None and not Path(cfg.data).expanduser().is_dir():
        raise UserError(f"data={cfg.data}: no such folder; give an ImageFolder tree or a folder with val_label.txt / val_map.txt")
    ds = None
    if cfg.get("data") is not None:  # scanned first, and bounded: a wrong folder fails before any model is built
        from zoo.data.dataset import open_dataset

        ds = open_dataset(Path(cfg.data).expanduser(), Path(cfg.labels).expanduser() if cfg.get("labels") else None)
    req = build_request(cfg)
    report: Dict[str, Any] = {}
    if cfg.get("source_model"):
        if cfg.golden:
            raise UserError("golden=true checks a built artifact; drop source_model=true")
        with _source_runner(req) as runner:
            report["accuracy"] = _accuracy(cfg, req, runner, ds)
        return Validation(req, "source model", report)

    from zoo.artifacts import open_artifact, require_manifest
    from zoo.build.request import artifact_folder_name
    from zoo.store import artifact_dir

    if req.store_url:  # object storage: this machine's copy of the artifact, downloaded
        from zoo.remote.artifacts import pull

        pull(req)
    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    manifest = require_manifest(folder, _convert_hint(cfg, req))
    if not checks_passed(manifest["status"]):
        raise UserError(f"the artifact at {folder} failed its own validation; see {folder / MANIFEST}")
    with open_artifact(folder, manifest) as (runner, _):
        if cfg.golden:
            from zoo.golden import check_golden

            report["golden"] = check_golden(folder, runner, req.precision)
        if cfg.get("data") is not None:
            report["accuracy"] = _accuracy(cfg, req, runner, ds)
    manifest.update(report)  # accuracy and golden results travel with the artifact
    write_json(folder / MANIFEST, manifest)
    if req.store_url:
        from zoo.remote.artifacts import location, push_manifest, relative

        loc, rel = location(req), relative(req)
        push_manifest(loc, req.out_root, rel)
        return Validation(req, loc.url_of(rel), report)
    return Validation(req, str(folder), report)
