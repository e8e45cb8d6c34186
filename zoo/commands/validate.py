"""`zoo validate`: top-1 / top-5 of a built artifact (or of the source model itself) on an
ImageNet-style folder against the published figure, and the artifact against its golden outputs."""
from __future__ import annotations

import sys
from typing import Any, Dict

from omegaconf import DictConfig

from zoo.artifact_validation import Validation, validate_from_config


def run_validate(cfg: DictConfig) -> None:
    result = validate_from_config(cfg)
    _print(result.request, result.what, result.report)
    _exit(result)


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


def _exit(result: Validation) -> None:
    failed = result.failed
    if failed:
        print(f"error: {' and '.join(failed)} check failed", file=sys.stderr)
        sys.exit(1)
