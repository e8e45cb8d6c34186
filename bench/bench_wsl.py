"""Benchmark: time and peak RSS of each conversion stage for the WSL giant, resnext101_32x48d.

For each source (torchvision's WSL hub build, PaddleClas) it runs, as fresh processes:

  random   python -m zoo convert model=resnext101_32x48d source=S weights=random target=onnx force=true
           (the dry run: fresh init saved in the source's format, then the real path)
  file     the same conversion from a checkpoint file made beforehand by another process, which is
           what a conversion of downloaded weights does (weights=PATH; no init stage)

and reads the per-stage seconds and peak RSS the pipeline records in the manifest (each stage's
own high-water mark; a child process's peak, paddle2onnx's, is reported beside its stage). The
ratio is to the fp32 weight bytes (parameters x 4); the goal for ONNX, validated, is <= 2.5.

Usage:  python bench/bench_wsl.py [--sources torchvision,ppcls] [--modes random,file]
                                  [--out bench/results/wsl.json]
Needs about 10 GB of free memory and 8 GB of disk; about 3 minutes per run on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANT = "resnext101_32x48d"

MAKE_CHECKPOINT = r"""
import sys
from zoo.converters.sources import get_adapter
from zoo.registry.loader import load_registry
from zoo.registry.query import resolve_variant, select_weights
reg = load_registry()
v = resolve_variant(reg, sys.argv[1])
w = select_weights(reg, v, sys.argv[2], None)
adapter = get_adapter(sys.argv[2])
adapter.save_checkpoint(adapter.fresh(v, w, 0), sys.argv[3])
"""


def weight_bytes() -> int:
    from zoo.registry.arch_stats import arch_stats
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant

    v = resolve_variant(load_registry(), VARIANT)
    return arch_stats(v.arch, 224).params * 4


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def summarise(manifest: dict, wbytes: int, wall: float) -> dict:
    mib = wbytes / 2**20
    process = manifest["peak_rss_mb"]["process"]
    child = manifest["peak_rss_mb"].get("child", {})
    # the machine's peak in a stage is at most this process's plus its child's
    combined = {s: round(process.get(s, 0.0) + child.get(s, 0.0), 1) for s in set(process) | set(child)}
    peak_stage = max(combined, key=combined.get)
    return {
        "wall_s": round(wall, 1),
        "stages_s": manifest["timings_s"],
        "peak_rss_mb": {"process": process, "child": child, "stage_total": combined},
        "ratio_to_weights": {s: round(v / mib, 2) for s, v in sorted(combined.items())},
        "peak_mb": combined[peak_stage],
        "peak_stage": peak_stage,
        "peak_ratio": round(combined[peak_stage] / mib, 2),
        "status": manifest["status"],
        "artifact_bytes": sum(f["size"] for f in manifest["artifact"]["files"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", default="torchvision,ppcls")
    ap.add_argument("--modes", default="random,file")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "wsl.json")
    args = ap.parse_args()
    py = sys.executable
    wbytes = weight_bytes()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for source in args.sources.split(","):
            for mode in args.modes.split(","):
                weights = "random"
                if mode == "file":
                    suffix = ".pdparams" if source == "ppcls" else ".pth"
                    ckpt = tmp / f"{source}{suffix}"
                    run([py, "-c", MAKE_CHECKPOINT, VARIANT, source, str(ckpt)])
                    weights = str(ckpt)
                out = tmp / f"{source}-{mode}"
                cmd = [py, "-m", "zoo", "convert", f"model={VARIANT}", f"source={source}", f"weights={weights}",
                       "target=onnx", f"out_dir={out}", "force=true", "progress=false"]
                print(f"[bench] {source} weights={mode} ...", file=sys.stderr, flush=True)
                wall = run(cmd)
                manifest = json.loads(next(out.rglob("manifest.json")).read_text())
                results[f"{source}/{mode}"] = summarise(manifest, wbytes, wall)
                print(f"[bench] {source} weights={mode}: {wall:.0f} s, peak {results[f'{source}/{mode}']['peak_ratio']}x"
                      f" the weights ({results[f'{source}/{mode}']['peak_stage']})", file=sys.stderr, flush=True)
                for p in out.rglob("*.data"):
                    p.unlink()  # 3 GB each: keep the disk free for the next run
    report = {
        "variant": VARIANT,
        "fp32_weight_bytes": wbytes,
        "goal_peak_ratio": 2.5,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: {"wall_s": r["wall_s"], "peak_ratio": r["peak_ratio"], "peak_stage": r["peak_stage"]}
                      for k, r in results.items()}, indent=2))


if __name__ == "__main__":
    main()
