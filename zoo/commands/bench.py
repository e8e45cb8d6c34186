"""`zoo bench`: time every built artifact of a variant on this machine, record it, and pick one.

    python -m zoo bench model=resnext50_32x4d [source=torchvision] [target=onnx] [precision=int8]
                        [batches=1,8,32] [threads=N] [stability=5] [window=1] [max_seconds=30]
                        [pick=throughput|latency|throughput_under:<ms>] [force=true] [format=json]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import DictConfig

from zoo.bench import machine
from zoo.bench.pick import Candidate, choose
from zoo.bench.published import HARDWARE_NOTE, vendor_figures
from zoo.bench.runner import Outcome, Settings, bench, default_threads, find_artifacts
from zoo.errors import Unavailable, UserError
from zoo.remote.location import is_url
from zoo.render import check_format, render

COLUMNS = ["source", "tag", "target", "precision", "status", "batch", "img_s", "p50_ms", "p90_ms", "p99_ms",
           "stable", "peak_mib"]
PUBLISHED_COLUMNS = ["target", "device", "sdk", "precision", "batch", "fps", "latency_ms", "published_in"]


def _given(group: str) -> Optional[str]:
    """The value of ``group=`` on the command line (the target group has a default: onnx)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    for word in HydraConfig.get().overrides.task:
        head, _, value = word.partition("=")
        if head.lstrip("+~") == group:
            return value
    return None


def _rows(outcomes: List[Outcome]) -> List[Dict[str, Any]]:
    rows = []
    for o in outcomes:
        m = o.artifact.manifest
        base = {k: m[k] for k in ("source", "tag", "target", "precision", "status")}
        for p in (o.entry or {}).get("points", []):
            lat = p["latency_ms"]
            rows.append({**base, "batch": p["batch"], "img_s": round(p["throughput"], 2),
                         "p50_ms": round(lat["p50"], 2), "p90_ms": round(lat["p90"], 2),
                         "p99_ms": round(lat["p99"], 2), "stable": p["stable"], "peak_mib": p["peak_rss_mb"]})
    return rows


def _candidates(outcomes: List[Outcome]) -> List[Candidate]:
    return [Candidate(label=o.artifact.label, folder=str(o.artifact.folder), status=str(o.artifact.manifest["status"]),
                      calibration=o.artifact.manifest.get("calibration"),
                      points=(o.entry or {}).get("points", [])) for o in outcomes]


def run_bench(cfg: DictConfig) -> None:
    fmt = check_format(str(cfg.format))
    if cfg.get("model") is None:
        raise UserError("bench needs model=NAME (python -m zoo list shows them), e.g. "
                        "python -m zoo bench model=resnext50_32x4d")
    variant = str(cfg.model.name)
    source = cfg.source.name if cfg.get("source") is not None else None
    target = _given("target")
    precision = _given("precision")
    filters = (variant, source, [target] if target else None, [precision] if precision else None)
    store = None
    if is_url(cfg.out_dir):  # object storage: the matching artifacts are downloaded, their figures written back
        from zoo.remote.artifacts import LocalCopies

        store = LocalCopies(str(cfg.out_dir), cfg.store.endpoint_url, lambda tree: [
            a.folder for a in find_artifacts(tree, *filters)])
        root = store.root
        artifacts = [a for a in find_artifacts(root, *filters) if a.folder in store.folders]
    else:
        root = Path(str(cfg.out_dir)).expanduser()
        artifacts = find_artifacts(root, *filters)
    if not artifacts:
        what = " ".join(x for x in (f"model={variant}", source and f"source={source}", target and f"target={target}",
                                    precision and f"precision={precision}") if x)
        raise Unavailable(f"no built artifact for {what} under {root}; build one first: python -m zoo convert {what} "
                          f"out_dir={cfg.out_dir}" + " weights=random (or your weights)")
    settings = Settings(batches=list(cfg.batches), threads=int(cfg.threads or default_threads()),
                        window_s=float(cfg.window), stability_pct=float(cfg.stability),
                        max_seconds=float(cfg.max_seconds))
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if cfg.progress else (lambda line: None)
    outcomes = bench(artifacts, settings, say)
    if store:
        store.push_manifests()
    here = machine.describe()
    published = vendor_figures(variant)
    choice = choose(_candidates(outcomes), str(cfg.pick), bool(cfg.force)) if cfg.get("pick") else None
    rows = _rows(outcomes)
    not_measured = [{"artifact": o.artifact.label, "why": o.not_measured} for o in outcomes if o.not_measured]
    if fmt == "json":
        doc = {"variant": variant, "machine": here, "threads": settings.threads, "not_measured": not_measured,
               "published": {"note": HARDWARE_NOTE, "figures": published},
               "pick": None if choice is None else {"strategy": str(cfg.pick), "artifact": choice.candidate.label,
                                                    "folder": choice.candidate.folder, "point": choice.point,
                                                    "why": choice.why, "excluded": [
                                                        {"artifact": a, "why": w} for a, w in choice.excluded]}}
        sys.stdout.write(render(rows, fmt, COLUMNS, title=None, document=doc))
        return
    title = f"{variant} on this machine, {settings.threads} thread(s)"
    if fmt == "csv":  # the rows alone on stdout, so that it parses; the rest as text on stderr
        sys.stdout.write(render(rows, fmt, COLUMNS))
    out = [] if fmt == "csv" else [render(rows, fmt, COLUMNS, title=title) if rows else "nothing was measured\n"]
    out.append(f"machine: {machine.describe_line(here)}\n")
    for n in not_measured:
        out.append(f"not measured: {n['artifact']}: {n['why']}\n")
    if published:
        out.append(f"\nvendor figures for {variant} ({HARDWARE_NOTE}):\n")
        out.append(render(published, fmt, PUBLISHED_COLUMNS))
    if choice is not None:
        out.append(f"\npick={cfg.pick}: deploy {choice.candidate.label} at batch {choice.point['batch']}\n"
                   f"  {choice.candidate.folder}\n  why: {choice.why}\n")
        for label, why in choice.excluded:
            out.append(f"  not considered: {label}: {why}\n")
    (sys.stderr if fmt == "csv" else sys.stdout).write("".join(out))
