"""Benchmark: throughput of every artifact that runs on this CPU, against PyTorch eager.

One run builds the artifacts with ``zoo convert ... weights=random`` (the real architecture, fresh
weights), then times each with ``python -m zoo bench`` (the one measuring code path: the runtime's own
session in a worker process, windows until three agree) at the same thread count, at batch 1 and 8,
and PyTorch eager by the same rule (``zoo.bench.measure``):

  torch eager   torchvision's model, torch.no_grad(), float32
  ORT fp32/fp16/int8   ONNX Runtime CPU, the onnx target's three precisions; int8 is the target's
                       default recipe (uint8 activations, int8 per-channel weights), and "int8 s8s8"
                       the symmetric int8-activation recipe it used before (and the ixRT kit still uses)
  OpenVINO fp32/fp16/int8   the CPU plugin (fp32 and int8 pinned to f32 inference, fp16 to f16 where
                       the CPU has it); int8 is NNCF's post-training quantization
  MindSpore     the MindIR through mindspore.load + nn.GraphCell (CPU)

Throughput is images/s, the mean of the three agreeing windows. The peak-FLOP/s fraction uses
2 x MACs per image against (a) a measured float32 GEMM on the same threads and (b) the nominal peak from the processor's vector width (cores x GHz x FLOPs/cycle).

Usage:  python bench/bench_runtimes.py [--model resnext50_32x4d] [--threads N] [--seconds 30]
                                       [--out bench/results/runtimes.json]
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
from typing import Dict


# (label, target, precision, extra overrides); each label's artifact goes to its own out_dir
ARTIFACTS = [("onnx fp32", "onnx", "fp32", []), ("onnx fp16", "onnx", "fp16", []), ("onnx int8", "onnx", "int8", []),
             ("onnx int8 s8s8", "onnx", "int8", ["target.int8.activation_type=QInt8",
                                                  "target.int8.activation_symmetric=true"]),
             ("openvino fp32", "openvino", "fp32", []), ("openvino fp16", "openvino", "fp16", []),
             ("openvino int8", "openvino", "int8", []), ("mindir fp32", "mindir", "fp32", [])]


def build(model: str, out: Path) -> Dict[str, Path]:
    """Convert the model to every runnable target; returns {label: artifact folder}."""
    folders = {}
    for label, target, precision, extra in ARTIFACTS:
        where = out / label.replace(" ", "-")
        cmd = [sys.executable, "-m", "zoo", "convert", f"model={model}", "source=torchvision", f"target={target}",
               f"precision={precision}", "weights=random", f"out_dir={where}", "progress=false", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"conversion failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        name = target if precision == "fp32" else f"{target}-{precision}"
        folders[label] = next(where.glob(f"{model}/torchvision/*/{name}"))
    return folders


def zoo_bench(model: str, folders: Dict[str, Path], threads: int, seconds: float) -> Dict[str, Dict[int, float]]:
    """Images/s of every artifact at batch 1 and 8, measured by ``python -m zoo bench`` (the one measuring path)."""
    out: Dict[str, Dict[int, float]] = {}
    for label, folder in folders.items():
        root = folder.parents[3]  # <out_dir>/<variant>/<source>/<tag>/<target>
        proc = subprocess.run([sys.executable, "-m", "zoo", "bench", f"model={model}", f"out_dir={root}",
                               "batches=1,8", f"threads={threads}", f"max_seconds={seconds}", "format=json",
                               "progress=false"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"zoo bench failed for {label}:\n{proc.stderr[-2000:]}")
        rows = json.loads(proc.stdout)["rows"]
        out[RUNTIME_LABEL[label]] = {r["batch"]: r["img_s"] for r in rows}
    return out


# artifact label -> the runtime's row in the results
RUNTIME_LABEL = {"onnx fp32": "ORT fp32", "onnx fp16": "ORT fp16", "onnx int8": "ORT int8",
                 "onnx int8 s8s8": "ORT int8 s8s8", "openvino fp32": "OpenVINO fp32 (f32 compute)",
                 "openvino fp16": "OpenVINO fp16", "openvino int8": "OpenVINO int8 (f32 compute)",
                 "mindir fp32": "MindSpore MindIR fp32"}


def torch_eager(model: str, threads: int, seconds: float) -> Dict[int, float]:
    """The baseline, measured by the same rule as zoo bench (zoo.bench.measure)."""
    import torch
    import torchvision

    from zoo.bench.measure import measure

    torch.set_num_threads(threads)
    net = torchvision.models.get_model(model, weights=None).eval()
    rates = {}
    for batch in (1, 8):
        x = torch.randn(batch, 3, 224, 224)

        def call():
            with torch.no_grad():
                net(x)

        rates[batch] = measure(call, batch, window_s=1.0, stability_pct=5, max_seconds=seconds).throughput
    return rates


def gemm_gflops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(3):
        a @ b
    t, n = time.perf_counter(), 10
    for _ in range(n):
        a @ b
    return 2 * 2048**3 * n / (time.perf_counter() - t) / 1e9


def nominal_gflops(cores: int) -> Dict[str, object]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = next((float(line.split(":")[1]) for line in flags.splitlines() if line.startswith("cpu MHz")), 0.0)
    per_cycle = 64 if "avx512f" in flags else (32 if "avx2" in flags else 8)  # 2 FMA units x lanes x 2
    return {"ghz": mhz / 1000, "fp32_flops_per_cycle": per_cycle, "gflops": cores * mhz / 1000 * per_cycle}


def cpu_model() -> Dict[str, object]:
    """The processor's name and the instruction sets int8 and fp16 speed depend on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16", "avx512_fp16")
    return {"name": name, "isa": [f for f in wanted if f in flags]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnext50_32x4d")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=30.0, help="at most this many timed seconds per runtime and batch")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runtimes.json")
    args = ap.parse_args()

    from zoo.registry.arch_stats import arch_stats
    from zoo.registry.loader import load_registry

    macs = arch_stats(load_registry().variants[args.model].arch, 224).macs
    with tempfile.TemporaryDirectory() as tmp:
        folders = build(args.model, Path(tmp))
        results: Dict[str, Dict[int, float]] = {"torch eager fp32": torch_eager(args.model, args.threads, args.seconds)}
        results.update(zoo_bench(args.model, folders, args.threads, args.seconds))
    for label, r in results.items():
        print(f"{label:<34} bs1 {r[1]:7.2f} img/s   bs8 {r[8]:7.2f} img/s", flush=True)
    gemm = gemm_gflops(args.threads)
    nominal = nominal_gflops(args.threads)
    eager = results["torch eager fp32"]
    ov32 = next(k for k in results if k.startswith("OpenVINO fp32"))
    ov8 = next(k for k in results if k.startswith("OpenVINO int8"))
    ratios = {f"bs{b}": {
        "ORT fp32 / eager": results["ORT fp32"][b] / eager[b],
        "OpenVINO fp32 / eager": results[ov32][b] / eager[b],
        "ORT int8 / ORT fp32": results["ORT int8"][b] / results["ORT fp32"][b],
        "ORT int8 s8s8 / ORT fp32": results["ORT int8 s8s8"][b] / results["ORT fp32"][b],
        "OpenVINO int8 / ORT fp32": results[ov8][b] / results["ORT fp32"][b],
    } for b in (1, 8)}
    table = {label: {f"bs{b}": {"img_s": round(r, 2), "gflops": round(2 * macs * r / 1e9, 1),
                                "of_gemm_peak": round(2 * macs * r / 1e9 / gemm, 3),
                                "of_nominal_peak": round(2 * macs * r / 1e9 / nominal["gflops"], 3)}
                     for b, r in rates.items()} for label, rates in results.items()}
    report = {
        "what": f"{args.model} throughput on this CPU, weights=random, {args.threads} threads, batch 1 and 8",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "cpu": cpu_model(), "python": platform.python_version()},
        "macs_per_image": macs,
        "peak": {"measured_fp32_gemm_gflops": round(gemm, 1), "nominal": nominal},
        "results": table,
        "ratios": {b: {k: round(v, 2) for k, v in r.items()} for b, r in ratios.items()},
        "goals": {"ORT fp32 / eager": 1.2, "OpenVINO fp32 / eager": 1.5, "ORT int8 / ORT fp32": 2.0,
                  "OpenVINO int8 / ORT fp32": 2.5},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["ratios"], indent=2))
    print(f"fp32 GEMM {gemm:.0f} GFLOP/s measured, {nominal['gflops']:.0f} nominal; written to {args.out}")


if __name__ == "__main__":
    main()
