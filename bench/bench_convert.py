"""Benchmark: `zoo convert` (full validation) against the bare export recipe, and a cache-hit re-run.

Both sides run as fresh processes, so interpreter start and imports count for both, and use freshly
initialised weights (nothing can be downloaded here):

  bare recipe   torchvision.models.resnext50_32x4d() -> torch.onnx.export -> onnxsim -> onnx.save
  zoo convert   python -m zoo convert model=resnext50_32x4d source=torchvision weights=random force=true
                (fresh init saved as a .pth and loaded back, reference outputs, export, simplify,
                 checker, metadata, params/MACs/shape checks, ONNX Runtime parity on 5 inputs)
  cache hit     the same command again without force=true

Usage:  python bench/bench_convert.py [--repeat 3] [--out bench/results/convert.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.bench.machine import describe

BARE = r"""
import sys, torch, torchvision, onnx
from onnxsim import simplify
torch.manual_seed(0)
m = torchvision.models.resnext50_32x4d().eval()
x = torch.randn(1, 3, 224, 224)
torch.onnx.export(m, (x,), sys.argv[1], dynamo=False, opset_version=17, input_names=["input"],
                  output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
s, ok = simplify(onnx.load(sys.argv[1]))
assert ok
onnx.save(s, sys.argv[1])
"""


def timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "convert.json")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        zoo = [py, "-m", "zoo", "convert", "model=resnext50_32x4d", "source=torchvision", "weights=random",
               f"out_dir={tmp / 'artifacts'}", "progress=false"]
        bare, full, hit = [], [], []
        for i in range(args.repeat):
            bare.append(timed([py, "-c", BARE, str(tmp / "bare.onnx")], tmp))
            full.append(timed(zoo + ["force=true"], tmp))
            hit.append(timed(zoo, tmp))
    med = {k: statistics.median(v) for k, v in (("bare_recipe_s", bare), ("zoo_convert_s", full), ("cache_hit_s", hit))}
    result = {
        "what": "resnext50_32x4d torchvision -> onnx fp32, weights=random, wall time of whole processes",
        "machine": {**describe(), "python": platform.python_version()},
        "repeat": args.repeat,
        "runs_s": {"bare_recipe": bare, "zoo_convert": full, "cache_hit": hit},
        "median_s": med,
        "ratio_convert_to_bare": round(med["zoo_convert_s"] / med["bare_recipe_s"], 3),
        "goals": {"ratio_max": 1.5, "cache_hit_max_s": 2.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"bare recipe {med['bare_recipe_s']:.2f} s | zoo convert {med['zoo_convert_s']:.2f} s "
          f"(x{result['ratio_convert_to_bare']}) | cache hit {med['cache_hit_s']:.2f} s  -> {args.out}")


if __name__ == "__main__":
    main()
