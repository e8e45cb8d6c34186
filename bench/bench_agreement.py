"""Benchmark: do `zoo bench` figures agree with each runtime's own measuring tool? (goal: within 10%)

One run builds resnext50_32x4d (weights=random) to onnx and openvino fp32, times both with
``python -m zoo bench``, then measures the same files independently, with the same threads and batch:

  OpenVINO      ``benchmark_app`` (shipped with the openvino package): -api sync, one stream, the same
                inference precision (f32), the batch as the input shape
  ONNX Runtime  a bare ``InferenceSession.run`` loop for the same number of seconds

and records zoo / independent for each (runtime, batch).

Usage:  python bench/bench_agreement.py [--threads N] [--seconds 15] [--out bench/results/agreement.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

import numpy as np

MODEL = "resnext50_32x4d"
BATCHES = (1, 8)


def zoo(*args: str, cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"zoo {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def benchmark_app(xml: Path, batch: int, threads: int, seconds: float) -> float:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-api", "sync", "-nstreams", "1", "-nthreads", str(threads),
           "-hint", "none", "-infer_precision", "f32", "-shape", f"[{batch},3,224,224]", "-t", str(int(seconds))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = re.search(r"Throughput:\s*([\d.]+)\s*FPS", proc.stdout)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"benchmark_app failed: {' '.join(cmd)}\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return float(found.group(1))


def ort_loop(onnx: Path, batch: int, threads: int, seconds: float) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"input": x})
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sess.run(None, {"input": x})
        n += 1
    return batch * n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=15.0, help="seconds of each independent measurement")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "agreement.json")
    args = ap.parse_args()
    from zoo.bench.machine import describe

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for target in ("onnx", "openvino"):
            zoo("convert", f"model={MODEL}", "source=torchvision", f"target={target}", "weights=random",
                "progress=false", cwd=work)
        doc = json.loads(zoo("bench", f"model={MODEL}", f"threads={args.threads}", "batches=1,8", "format=json",
                             "progress=false", cwd=work))
        measured: Dict[str, Dict[str, Dict[str, float]]] = {}
        for row in doc["rows"]:
            folder = next(work.glob(f"artifacts/{MODEL}/torchvision/*/{row['target']}"))
            b = row["batch"]
            if row["target"] == "openvino":
                other, tool = benchmark_app(folder / "model.xml", b, args.threads, args.seconds), "benchmark_app"
            else:
                other, tool = ort_loop(folder / "model.onnx", b, args.threads, args.seconds), "InferenceSession.run loop"
            measured.setdefault(row["target"], {})[f"bs{b}"] = {
                "zoo_bench_img_s": row["img_s"], "independent_img_s": round(other, 2), "independent": tool,
                "ratio": round(row["img_s"] / other, 3)}
            print(f"{row['target']:<9} bs{b}: zoo bench {row['img_s']:.2f} img/s, {tool} {other:.2f} img/s, "
                  f"ratio {row['img_s'] / other:.3f}", flush=True)
    worst = max(abs(v["ratio"] - 1) for t in measured.values() for v in t.values())
    report = {"what": f"{MODEL} fp32, weights=random, {args.threads} threads: zoo bench against each runtime's own tool",
              "machine": describe(), "results": measured, "worst_deviation": round(worst, 3), "goal": 0.10,
              "met": worst <= 0.10}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst deviation {worst:.1%} (goal 10%); written to {args.out}")


if __name__ == "__main__":
    main()
