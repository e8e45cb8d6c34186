"""The artifact store on object storage, against a real S3 API server on loopback (moto in server mode).

Measures, in one run on this machine:
- the cache-hit check against the bucket (the remote manifest and one listing; in-process, median of 9),
  and a whole `zoo convert` process that hits the cache in the bucket;
- the upload of a resnext50_32x4d fp32 artifact (97 MiB);
- a 4-job joblib sweep (onnx, openvino x fp32, fp16) into the bucket against the same sweep into a
  local folder, each from a fresh cache.

Usage:  python bench/bench_store.py [--model resnext50_32x4d]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "store.json"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zoo(args, env, cwd) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"zoo {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return round(time.perf_counter() - start, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnext50_32x4d")
    args = ap.parse_args()
    import boto3

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        creds = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=endpoint, **{k.lower(): v for k, v in creds.items()
                                                     if k != "AWS_DEFAULT_REGION"},
                     region_name="us-east-1").create_bucket(Bucket="bench")
        work = Path(tempfile.mkdtemp(prefix="bench-store-"))
        env = {**os.environ, **creds, "AWS_ENDPOINT_URL": endpoint}
        art = [f"model={args.model}", "source=torchvision", "weights=random", "progress=false"]

        # one artifact built into the bucket; then the cache-hit check and the upload, timed in-process
        build_env = {**env, "ZOO_CACHE": str(work / "c0")}
        first = zoo(["convert", *art, "target=onnx", "out_dir=s3://bench/one"], build_env, work)
        hit_process = zoo(["convert", *art, "target=onnx", "out_dir=s3://bench/one"],
                          {**env, "ZOO_CACHE": str(work / "c1")}, work)
        os.environ.update(creds, AWS_ENDPOINT_URL=endpoint, ZOO_CACHE=str(work / "c0"))
        from zoo.remote.artifacts import remote_hit, upload
        from zoo.remote.location import open_location

        loc = open_location("s3://bench/one", "out_dir", None)
        rel = f"{args.model}/torchvision/IMAGENET1K_V1/onnx"
        key = loc.read_json(f"{rel}/manifest.json")["key"]
        checks = []
        for _ in range(9):
            t = time.perf_counter()
            assert remote_hit(open_location("s3://bench/one", "out_dir", None), rel, key) is not None
            checks.append(time.perf_counter() - t)
        local_folder = next((work / "c0" / "stores").glob(f"*/{rel}"))
        size = sum(p.stat().st_size for p in local_folder.rglob("*") if p.is_file())
        t = time.perf_counter()
        upload(loc, local_folder, f"copy/{rel}", progress=False)
        upload_s = time.perf_counter() - t

        # the 4-job sweep, bucket against local disk, each from a fresh cache
        sweep = ["-m", "convert", *art, "target=onnx,openvino", "precision=fp32,fp16", "hydra/launcher=zoo_joblib"]
        bucket = zoo([*sweep, "out_dir=s3://bench/sweep"], {**env, "ZOO_CACHE": str(work / "c2")}, work)
        local = zoo([*sweep, f"out_dir={work / 'local'}"], {**env, "ZOO_CACHE": str(work / "c3")}, work)
    finally:
        server.kill()
        server.wait()
    result = {
        "what": f"{args.model} torchvision weights=random; moto {__import__('moto').__version__} S3 server on "
                "127.0.0.1; s3fs " + __import__("s3fs").__version__,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "first_build_into_bucket_s": first,
        "cache_hit_check_s": {"median": round(statistics.median(checks), 4), "max": round(max(checks), 4),
                              "runs": len(checks)},
        "cache_hit_whole_process_s": hit_process,
        "upload": {"bytes": size, "seconds": round(upload_s, 3), "mib_per_s": round(size / 2**20 / upload_s, 1)},
        "sweep_4_jobs_s": {"bucket": bucket, "local_disk": local, "ratio": round(bucket / local, 3)},
        "goal": {"cache_hit_check_s_max": 1.0},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"cache-hit check {result['cache_hit_check_s']['median']:.3f} s (whole process {hit_process:.2f} s) | "
          f"upload {size / 2**20:.0f} MiB in {upload_s:.2f} s | 4-job sweep bucket {bucket:.1f} s vs disk {local:.1f} s "
          f"(x{result['sweep_4_jobs_s']['ratio']}) -> {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
