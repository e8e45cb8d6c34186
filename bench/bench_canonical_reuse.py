"""Benchmark: one checkpoint swept to onnx, openvino and mindir against the same sweep to onnx alone.

The canonical ONNX (source build, reference outputs, export, simplify, checks against the source) is built
once per (variant, source, weights, export spec) and reused by every target (zoo.build.canonical), so the
three-target sweep should cost little more than the one-target sweep. Each side is one fresh
`python -m zoo -m convert ...` process into a fresh out_dir with freshly initialised weights, timed from
start to exit; the goal is a ratio of at most 1.6.

Usage:  python bench/bench_canonical_reuse.py [--model resnext50_32x4d] [--source torchvision] [--repeat 1]
                                              [--out bench/results/canonical_reuse.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

SUMMARY = re.compile(r"^(\S+)  (\S+)/(\S+) -> (\S+) (\S+)\s+\[(\w+)\]", re.M)
GOAL = 1.6


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    reused = []
    for target in targets.split(","):
        manifest = next(out.glob(f"{model}/{source}/*/{target}/manifest.json"))
        reused.append(json.loads(manifest.read_text())["canonical"]["reused"])
    return {"wall_s": round(wall, 2), "canonical_reused": dict(zip(targets.split(","), reused))}


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
    rebuilt: List[Dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="zoo-bench-reuse-") as tmp:
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both sides alike
            one.append(sweep(args.model, args.source, "onnx", Path(tmp)))
            many.append(sweep(args.model, args.source, args.targets, Path(tmp)))
            # force=true rebuilds each job's canonical model too: what every sweep did before the reuse
            rebuilt.append(sweep(args.model, args.source, args.targets, Path(tmp), "force=true"))
    one_s = statistics.median(r["wall_s"] for r in one)
    many_s = statistics.median(r["wall_s"] for r in many)
    rebuilt_s = statistics.median(r["wall_s"] for r in rebuilt)
    result = {
        "what": f"{args.model} from {args.source}, weights=random: a sweep to {args.targets} against one to onnx, "
                "each one fresh process into a fresh out_dir",
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "repeat": args.repeat,
        "runs": {"onnx": one, args.targets: many, f"{args.targets} force=true": rebuilt},
        "median_s": {"onnx": one_s, args.targets: many_s, f"{args.targets} force=true": rebuilt_s},
        "ratio": round(many_s / one_s, 3),
        "ratio_without_reuse": round(rebuilt_s / one_s, 3),
        "goal_ratio_max": GOAL,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"onnx alone {one_s:.1f} s | {args.targets} {many_s:.1f} s (x{result['ratio']}, goal <= {GOAL}) | "
          f"rebuilding each time {rebuilt_s:.1f} s (x{result['ratio_without_reuse']}) -> {args.out}")


if __name__ == "__main__":
    main()
