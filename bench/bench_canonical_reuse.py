"""Benchmark: one checkpoint swept to onnx, openvino and mindir against the same sweep to onnx alone.

The canonical ONNX (source build, reference outputs, export, simplify, checks against the source) is built
once per (variant, source, weights, export spec) and reused by every target (zoo.build.canonical), so the
three-target sweep should cost little more than the one-target sweep. Each side is one fresh
`python -m zoo -m convert ...` process into a fresh out_dir with freshly initialised weights, timed from
start to exit; the goal is a ratio of at most 1.6. The sweep to onnx and openvino alone is timed too, and
each job's stages (for MindIR, MindSpore's own export and its run of the parity sets) are recorded.

Usage:  python bench/bench_canonical_reuse.py [--model resnext50_32x4d] [--source torchvision] [--repeat 1]
                                              [--out bench/results/canonical_reuse.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from zoo.bench.machine import describe

SUMMARY = re.compile(r"^(\S+)  (\S+)/(\S+) -> (\S+) (\S+)\s+\[(\w+)\]", re.M)
GOAL = 1.6
TWO = "onnx,openvino"  # the same sweep without its MindSpore job


def sweep(model: str, source: str, targets: str, cwd: Path, *extra: str) -> Dict[str, object]:
    out = Path(tempfile.mkdtemp(prefix="out-", dir=cwd))
    cmd = [sys.executable, "-m", "zoo", "-m", "convert", f"model={model}", f"source={source}", f"target={targets}",
           "weights=random", f"out_dir={out}", "progress=false", *extra]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    jobs = SUMMARY.findall(proc.stdout)
    if len(jobs) != len(targets.split(",")) or any(j[5] != "PASSED" for j in jobs):
        raise SystemExit(f"not every job passed:\n{proc.stdout[-3000:]}")
    reused, own = [], {}
    for target in targets.split(","):
        manifest = json.loads(next(out.glob(f"{model}/{source}/*/{target}/manifest.json")).read_text())
        reused.append(manifest["canonical"]["reused"])
        own[target] = {"stages_s": manifest["timings_s"]}
        if "worker_s" in manifest["artifact"]["info"]:  # MindSpore's own export and run of the parity sets
            own[target]["worker_s"] = manifest["artifact"]["info"]["worker_s"]
    return {"wall_s": round(wall, 2), "canonical_reused": dict(zip(targets.split(","), reused)),
            "jobs": own}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnext50_32x4d")
    ap.add_argument("--source", default="torchvision")
    ap.add_argument("--targets", default="onnx,openvino,mindir")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results/canonical_reuse.json"))
    args = ap.parse_args()
    one: List[Dict[str, object]] = []
    many: List[Dict[str, object]] = []
    two: List[Dict[str, object]] = []
    rebuilt: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-reuse-") as tmp:
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both sides alike
            one.append(sweep(args.model, args.source, "onnx", Path(tmp)))
            many.append(sweep(args.model, args.source, args.targets, Path(tmp)))
            two.append(sweep(args.model, args.source, TWO, Path(tmp)))  # no MindSpore: the reuse alone
            # force=true rebuilds each job's canonical model too: what every sweep did before the reuse
            rebuilt.append(sweep(args.model, args.source, args.targets, Path(tmp), "force=true"))
    one_s = statistics.median(r["wall_s"] for r in one)
    many_s = statistics.median(r["wall_s"] for r in many)
    two_s = statistics.median(r["wall_s"] for r in two)
    rebuilt_s = statistics.median(r["wall_s"] for r in rebuilt)
    result = {
        "what": f"{args.model} from {args.source}, weights=random: a sweep to {args.targets} against one to onnx, "
                "each one fresh process into a fresh out_dir",
        "machine": {**describe(), "python": platform.python_version()},
        "repeat": args.repeat,
        "runs": {"onnx": one, args.targets: many, TWO: two, f"{args.targets} force=true": rebuilt},
        "median_s": {"onnx": one_s, args.targets: many_s, TWO: two_s, f"{args.targets} force=true": rebuilt_s},
        "ratio": round(many_s / one_s, 3),
        "ratio_two_targets": round(two_s / one_s, 3),
        "ratio_without_reuse": round(rebuilt_s / one_s, 3),
        "goal_ratio_max": GOAL,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"onnx alone {one_s:.1f} s | {args.targets} {many_s:.1f} s (x{result['ratio']}, goal <= {GOAL}) | "
          f"{TWO} {two_s:.1f} s (x{result['ratio_two_targets']}) | "
          f"rebuilding each time {rebuilt_s:.1f} s (x{result['ratio_without_reuse']}) -> {args.out}")


if __name__ == "__main__":
    main()
