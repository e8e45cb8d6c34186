"""Benchmark: throughput of every artifact that runs on this CPU, against PyTorch eager.

One run builds the artifacts with ``zoo convert ... weights=random`` (the real architecture, fresh
weights), then times each runtime at the same thread count, at batch 1 and batch 8:

  torch eager   torchvision's model, torch.no_grad(), float32
  ORT fp32/fp16/int8   ONNX Runtime CPU, the onnx target's three precisions; int8 is the target's
                       default recipe (uint8 activations, int8 per-channel weights), and "int8 s8s8"
                       the symmetric int8-activation recipe it used before (and the ixRT kit still uses)
  OpenVINO fp32/fp16/int8   the CPU plugin (fp32 and int8 pinned to f32 inference, fp16 to f16 where
                       the CPU has it); int8 is NNCF's post-training quantization
  MindSpore     the MindIR through mindspore.load + nn.GraphCell (CPU)

Throughput is images/s over timed iterations after warm-up (median of per-iteration rates). The
peak-FLOP/s fraction uses 2 x MACs per image against (a) a measured float32 GEMM on the same threads
and (b) the nominal peak from the processor's vector width (cores x GHz x FLOPs/cycle).

Usage:  python bench/bench_runtimes.py [--model resnext50_32x4d] [--threads N] [--seconds 8]
                                       [--out bench/results/runtimes.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

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


def measure(fn: Callable[[np.ndarray], object], batch: int, seconds: float) -> float:
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    for _ in range(3):
        fn(x)
    rates: List[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 5:
        t = time.perf_counter()
        fn(x)
        rates.append(batch / (time.perf_counter() - t))
    return statistics.median(rates)


def runners(model: str, folders: Dict[str, Path], threads: int) -> Dict[str, Callable[[np.ndarray], object]]:
    import onnxruntime as ort
    import openvino as ov
    import torch
    import torchvision

    torch.set_num_threads(threads)
    net = torchvision.models.get_model(model, weights=None).eval()

    def eager(x):
        with torch.no_grad():
            return net(torch.from_numpy(x))

    out = {"torch eager fp32": eager}
    for label in ("onnx fp32", "onnx fp16", "onnx int8", "onnx int8 s8s8"):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(folders[label] / "model.onnx"), opts, providers=["CPUExecutionProvider"])
        out[label.replace("onnx", "ORT")] = (lambda s: lambda x: s.run(None, {"input": x}))(sess)
    from zoo.targets.openvino import inference_config

    core = ov.Core()
    for label in ("openvino fp32", "openvino fp16", "openvino int8"):
        cfg = {"INFERENCE_NUM_THREADS": threads, **inference_config(core, label.split()[1])}
        compiled = core.compile_model(str(folders[label] / "model.xml"), "CPU", cfg)
        precision = getattr(compiled.get_property("INFERENCE_PRECISION_HINT"), "type_name", None) or "default"
        out[f"OpenVINO {label.split()[1]} ({precision} compute)"] = (lambda r: lambda x: r.infer({0: x}))(
            compiled.create_infer_request())
    return out


MINDSPORE = r"""
import json, sys, time, statistics
import numpy as np
import mindspore as ms
from mindspore import nn
ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
ms.runtime.set_cpu_affinity(False) if hasattr(ms, "runtime") and hasattr(ms.runtime, "set_cpu_affinity") else None
cell = nn.GraphCell(ms.load(sys.argv[1]))
res = {}
for batch in [int(sys.argv[3])]:  # one batch size per process: a second shape fails to recompile in one
    x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32))
    for _ in range(3):
        cell(x).asnumpy()
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < float(sys.argv[2]) or len(rates) < 5:
        t = time.perf_counter(); cell(x).asnumpy(); rates.append(batch / (time.perf_counter() - t))
    res[batch] = statistics.median(rates)
print(json.dumps(res))
"""


def mindspore_rates(folder: Path, threads: int, seconds: float) -> Dict[int, float]:
    # MindSpore runs in its own interpreter: it must not share a process with other native runtimes.
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    rates = {}
    for batch in (1, 8):
        proc = subprocess.run([sys.executable, "-c", MINDSPORE, str(folder / "model.mindir"), str(seconds), str(batch)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"MindSpore benchmark failed:\n{proc.stderr[-2000:]}")
        rates.update({int(k): v for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()})
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
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per runtime and batch")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "runtimes.json")
    args = ap.parse_args()

    from zoo.registry.arch_stats import arch_stats
    from zoo.registry.loader import load_registry

    macs = arch_stats(load_registry().variants[args.model].arch, 224).macs
    with tempfile.TemporaryDirectory() as tmp:
        folders = build(args.model, Path(tmp))
        results: Dict[str, Dict[int, float]] = {}
        for label, fn in runners(args.model, folders, args.threads).items():
            results[label] = {b: measure(fn, b, args.seconds) for b in (1, 8)}
            print(f"{label:<34} bs1 {results[label][1]:7.2f} img/s   bs8 {results[label][8]:7.2f} img/s", flush=True)
        results["MindSpore MindIR fp32"] = mindspore_rates(folders["mindir fp32"], args.threads, args.seconds)
        print(f"{'MindSpore MindIR fp32':<34} bs1 {results['MindSpore MindIR fp32'][1]:7.2f} img/s   "
              f"bs8 {results['MindSpore MindIR fp32'][8]:7.2f} img/s")
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
