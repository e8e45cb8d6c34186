"""Benchmark: a whole-registry sweep, its cache-hit re-run, and the joblib preset against the basic launcher.

Every run is a fresh `python -m zoo -m convert ...` process with freshly initialised weights
(weights=random: nothing is downloaded), timed from start to exit:

  (a) full sweep   model='glob(*)' source=torchvision,timm,mmcls,ppcls,mindcv target=onnx weights=random
                   (combinations the registry does not have are skipped by the CLI, one line each)
  (b) re-run       the identical command again: every artifact built in (a) must be a cache hit
  (c) launchers    a small subset (default: resnext50_32x4d from torchvision and timm, into two
                   output folders: 4 conversions) with the basic launcher, then hydra/launcher=zoo_joblib

The full sweep takes a long time on 2 cores; run it when the machine is otherwise quiet.

Usage:  python bench/bench_sweep.py [--subset-only] [--launcher zoo_joblib] [--subset-sources torchvision,timm]
                                    [--subset-copies 2] [--out bench/results/sweep.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

SOURCES = "torchvision,timm,mmcls,ppcls,mindcv"  # every source with a converter
# The CLI prints one summary line per converted job: "<variant>  <source>/<tag> -> <target> <precision>   [STATUS]".
SUMMARY = re.compile(r"^(\S+)  (\S+)/(\S+) -> (\S+) (\S+)\s+\[(\w+)\](  \(cache hit\))?$")


def sweep(overrides: List[str], cwd: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """Run one multirun sweep; its wall time, exit code and what each job did."""
    cmd = [sys.executable, "-m", "zoo", "-m", "convert", *overrides, "progress=false"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - t
    jobs = [m.groups() for m in map(SUMMARY.match, proc.stdout.splitlines()) if m]
    return {
        "command": " ".join(cmd[1:]).replace(str(cwd), "<tmp>"),  # no machine paths in the results
        "wall_s": round(elapsed, 2),
        "exit_code": proc.returncode,
        "built": sum(1 for j in jobs if j[5] == "PASSED" and not j[6]),
        "cache_hits": sum(1 for j in jobs if j[6]),
        "not_passed": [f"{j[0]} {j[1]}/{j[2]} -> {j[3]} {j[4]}: {j[5]}" for j in jobs if j[5] != "PASSED"],
        "skipped": sum(1 for line in proc.stderr.splitlines() if line.startswith("skipped: ")),
        "failed_jobs": sum(1 for line in proc.stderr.splitlines() if line.startswith("job failed")),
        "stderr_tail": proc.stderr[-1500:] if proc.returncode else "",
    }


def machine() -> Dict[str, Any]:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {
        "cpus": cpus,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subset-only", action="store_true", help="skip (a) and (b): only the launcher comparison")
    ap.add_argument("--launcher", default=None, help="hydra/launcher for (a) and (b), e.g. zoo_joblib (default: basic)")
    ap.add_argument("--subset-model", default="resnext50_32x4d")
    ap.add_argument("--subset-sources", default="torchvision,timm")
    ap.add_argument("--subset-copies", type=int, default=2,
                    help="output folders the subset is swept over: jobs = sources x copies, none sharing a folder")
    ap.add_argument("--parallel-launcher", default="zoo_joblib", help="the preset compared with the basic launcher")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sweep.json")
    args = ap.parse_args()

    result: Dict[str, Any] = {"machine": machine(), "weights": "random", "target": "onnx fp32"}
    with tempfile.TemporaryDirectory(prefix="zoo-bench-sweep-") as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "ZOO_CACHE": str(tmp / "cache")}  # a fresh cache and memory ledger
        env.pop("ZOO_THREADS", None)  # the presets' own thread share is part of what is measured
        if not args.subset_only:
            full = ["model=glob(*)", f"source={SOURCES}", "target=onnx", "weights=random", f"out_dir={tmp / 'full'}"]
            if args.launcher:
                full.append(f"hydra/launcher={args.launcher}")
            first = sweep(full, tmp, env)
            again = sweep(full, tmp, env)
            again["all_cache_hits"] = again["built"] == 0 and again["cache_hits"] == first["built"] > 0
            result["full_sweep"], result["rerun"] = first, again
            print(f"(a) full sweep {first['wall_s']:.0f} s: {first['built']} built, {first['skipped']} skipped, "
                  f"{len(first['not_passed']) + first['failed_jobs']} not passed (exit {first['exit_code']})")
            print(f"(b) re-run {again['wall_s']:.1f} s: {again['cache_hits']} cache hits, {again['built']} rebuilt "
                  f"-> all cache hits: {again['all_cache_hits']}")

        outs = ",".join(str(tmp / "subset" / "{launcher}" / str(i)) for i in range(args.subset_copies))
        runs = {}
        for name, extra in (("basic", []), (args.parallel_launcher, [f"hydra/launcher={args.parallel_launcher}"])):
            over = [f"model={args.subset_model}", f"source={args.subset_sources}", "target=onnx", "weights=random",
                    f"out_dir={outs.format(launcher=name)}", *extra]
            runs[name] = sweep(over, tmp, env)
        basic, parallel = runs["basic"], runs[args.parallel_launcher]
        result["launchers"] = {
            "jobs": basic["built"],
            "basic": basic,
            args.parallel_launcher: parallel,
            "speedup": round(basic["wall_s"] / parallel["wall_s"], 3) if parallel["wall_s"] else None,
            "same_jobs_built": basic["built"] == parallel["built"] > 0,
        }
        print(f"(c) {basic['built']} conversions: basic {basic['wall_s']:.1f} s, {args.parallel_launcher} "
              f"{parallel['wall_s']:.1f} s -> speed-up x{result['launchers']['speedup']}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")
    bad = [r for r in (result.get("full_sweep"), result.get("rerun"), basic, parallel) if r and r["exit_code"] != 0]
    if bad or not result["launchers"]["same_jobs_built"] or not result.get("rerun", {}).get("all_cache_hits", True):
        raise SystemExit("benchmark: a sweep did not do what it should; see the JSON")


if __name__ == "__main__":
    main()
