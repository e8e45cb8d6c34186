"""`zoo validate`: top-1 / top-5 of a built artifact (or of the source model itself) on an
ImageNet-style folder against the published figure, and the artifact against its golden outputs."""
from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from omegaconf import DictConfig

from zoo.errors import UserError
from zoo.registry.schema import Weights
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
    from zoo.converters.pipeline import _resolve_checkpoint
    from zoo.converters.stages import StageMeter
    from zoo.converters.sources import get_adapter

    adapter = get_adapter(req.weights.source)
    with tempfile.TemporaryDirectory(prefix="zoo-validate-") as work:
        checkpoint, _ = _resolve_checkpoint(req, adapter, Path(work), StageMeter())
        model = adapter.build(req.variant, req.weights, checkpoint)
        yield lambda x: adapter.run(model, x)


def _accuracy(cfg: DictConfig, req, runner) -> Dict[str, Any]:
    from zoo.data.dataset import check_labels, open_dataset, stratified_subset
    from zoo.evaluate import evaluate
    from zoo.registry.query import effective_input
    from zoo.scoring import judge

    ds = open_dataset(Path(cfg.data).expanduser(), Path(cfg.labels).expanduser() if cfg.get("labels") else None)
    check_labels(ds, req.variant.arch.num_classes)
    samples = ds.samples
    if cfg.get("limit") is not None:
        if int(cfg.limit) < 1:
            raise UserError(f"limit={cfg.limit}: give a positive number of images")
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


def run_validate(cfg: DictConfig) -> None:
    from zoo.commands.convert import build_request

    if cfg.get("data") is None and not cfg.golden:
        raise UserError("validate needs data=/path/to/val (an ImageNet-style folder) and/or golden=true")
    if cfg.get("data") is not None and not Path(cfg.data).expanduser().is_dir():
        raise UserError(f"data={cfg.data}: no such folder; give an ImageFolder tree or a folder with val_label.txt / val_map.txt")
    req = build_request(cfg)
    report: Dict[str, Any] = {}
    if cfg.get("source_model"):
        if cfg.golden:
            raise UserError("golden=true checks a built artifact; drop source_model=true")
        with _source_runner(req) as runner:
            report["accuracy"] = _accuracy(cfg, req, runner)
        _print(req, "source model", report)
        _exit(report)
        return

    from zoo.artifacts import open_artifact, require_manifest
    from zoo.converters.pipeline import artifact_folder_name
    from zoo.store import artifact_dir

    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    manifest = require_manifest(folder, _convert_hint(cfg, req))
    if manifest["status"] != "passed":
        raise UserError(f"the artifact at {folder} failed its own validation; see {folder / MANIFEST}")
    with open_artifact(folder, manifest) as (runner, _):
        if cfg.golden:
            from zoo.golden import check_golden

            report["golden"] = check_golden(folder, runner, req.precision)
        if cfg.get("data") is not None:
            report["accuracy"] = _accuracy(cfg, req, runner)
    manifest.update(report)  # accuracy and golden results travel with the artifact
    write_json(folder / MANIFEST, manifest)
    _print(req, str(folder), report)
    _exit(report)


def _print(req, what: str, report: Dict[str, Any]) -> None:
    lines = [f"{req.variant.name}  {req.weights.source}/{req.weights.tag} -> {req.target} {req.precision}   ({what})"]
    acc = report.get("accuracy")
    if acc:
        r, v = acc["result"], acc["verdict"]
        subset = f" (a subset of {acc['images_in_set']})" if r["n_evaluated"] < acc["images_in_set"] else ""
        if r["top1"] is None:
            lines.append(f"  accuracy   no image could be read ({r['n_requested']} requested)")
        else:
            lines.append(f"  accuracy   top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  on {r['n_evaluated']} images{subset}")
        skipped = ", ".join(f"{k} {n}" for k, n in r.get("skipped", {}).items())
        if skipped or acc["missing_in_label_file"]:
            lines.append(f"  skipped    {skipped or 'none'}; label-file entries without an image: {acc['missing_in_label_file']}")
        if acc["published_top1"] is None or v.get("passed") is None:
            lines.append(f"  published  {acc['published_top1']}  ({v.get('reason', 'no published top-1')})")
        else:
            w = acc["published_in"]
            lines.append(f"  published  top-1 {acc['published_top1']} ({w['doc']}: {w['table']})  "
                         f"diff {v['difference_pp']:+.2f} pp  tolerance ±{v['tolerance_pp']:.2f} pp  "
                         f"{'ok' if v['passed'] else 'FAILED'}")
    gold = report.get("golden")
    if gold:
        for name, p in gold["sets"].items():
            verdict = ("ok" if p["passed"] else "FAILED") if p.get("gated", True) else "reported"
            if "error" in p:
                lines.append(f"  golden     {name:<7} FAILED: {p['error']}")
                continue
            lines.append(f"  golden     {name:<7} cos {p['cosine']:.7f}  max-abs {p['max_abs']:.2e}  {verdict}")
    sys.stdout.write("\n".join(lines) + "\n")


def _exit(report: Dict[str, Any]) -> None:
    failed = [k for k, r in (("accuracy", report.get("accuracy", {}).get("verdict", {})),
                             ("golden", report.get("golden", {}))) if r.get("passed") is False]
    if failed:
        print(f"error: {' and '.join(failed)} check failed", file=sys.stderr)
        sys.exit(1)
