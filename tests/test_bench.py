"""zoo bench end to end on real artifacts: ONNX Runtime sessions timed in worker processes, the figures
in the manifest per machine, the pick among artifacts where one failed its parity, and the memory bound."""
from __future__ import annotations

import json
from importlib import metadata

import pytest
from conftest import make_checkpoint, read_manifest, run_zoo

from zoo.bench.machine import describe

VARIANT = "resnext50_32x4d"
QUICK = ("window=0.05", "max_seconds=1", "threads=1")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """onnx fp32 (passes) and onnx fp16 (fails its parity: logits past float16's range) of one checkpoint."""
    import torch

    work = tmp_path_factory.mktemp("bench")
    ckpt = make_checkpoint(VARIANT, "torchvision", work / "resnext50.pth")
    state = torch.load(ckpt, map_location="cpu")
    state["fc.weight"] *= 1e8  # weights past float16's 65504 (clamped) and logits far past it: parity fails
    torch.save(state, ckpt)
    out = work / "artifacts"
    for precision, extra in (("fp32", []), ("fp16", ["strict=false"])):
        proc = run_zoo("convert", f"model={VARIANT}", "source=torchvision", f"precision={precision}", f"weights={ckpt}",
                       f"out_dir={out}", "progress=false", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    folders = {p: next(out.glob(f"{VARIANT}/torchvision/*/{name}")) for p, name in (("fp32", "onnx"), ("fp16", "onnx-fp16"))}
    assert read_manifest(folders["fp32"])["status"] == "passed"
    assert read_manifest(folders["fp16"])["status"] == "failed"
    return out, folders


def test_bench_records_each_batch_and_picks_the_artifact_that_passed(built):
    out, folders = built
    proc = run_zoo("bench", f"model={VARIANT}", f"out_dir={out}", "batches=1,2", "pick=throughput", "format=json", *QUICK)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert sorted((r["precision"], r["batch"]) for r in doc["rows"]) == [("fp16", 1), ("fp16", 2), ("fp32", 1), ("fp32", 2)]
    assert doc["pick"]["folder"] == str(folders["fp32"])
    assert [e["artifact"] for e in doc["pick"]["excluded"]] == [f"torchvision/{folders['fp16'].parent.name} onnx fp16"]
    assert "status failed" in doc["pick"]["excluded"][0]["why"]
    assert "[bench 2/2]" in proc.stderr  # progress, one line per artifact and batch

    here = describe()
    entry = read_manifest(folders["fp32"])["bench"][here["id"]]
    assert entry["runtime"] == f"onnxruntime {metadata.version('onnxruntime')}" and entry["threads"] == 1
    assert entry["machine"]["cpu"] == here["cpu"]
    for p in entry["points"]:
        lat = p["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        # a call of `batch` images every p50 ms, back to back: the throughput follows from the median
        assert p["batch"] / p["throughput"] * 1000 == pytest.approx(lat["p50"], rel=0.5)
        assert p["peak_rss_mb"] <= p["estimate_mb"]  # the memory bound's estimate is conservative
    assert [p["batch"] for p in entry["points"]] == [1, 2]
    best = max(entry["points"], key=lambda p: p["throughput"])
    assert doc["pick"]["point"]["throughput"] == best["throughput"]

    rows = json.loads(run_zoo("results", f"out_dir={out}", "format=json").stdout)["rows"]
    fp32 = next(r for r in rows if r["precision"] == "fp32")
    assert (fp32["img_s"], fp32["bench_batch"]) == (best["throughput"], best["batch"])


def test_a_rerun_replaces_this_machine_and_keeps_another_and_skips_what_would_not_fit(built):
    out, folders = built
    folder = folders["fp32"]
    m = read_manifest(folder)
    here = describe()["id"]
    before = m["bench"][here]["measured_at"], m["bench"][here]["points"]
    other = {**m["bench"][here], "machine": {**m["bench"][here]["machine"], "id": "0therm4chine", "cpu": "Elsewhere"}}
    m["bench"]["0therm4chine"] = other
    (folder / "manifest.json").write_text(json.dumps(m))
    proc = run_zoo("bench", f"model={VARIANT}", f"out_dir={out}", "precision=fp32", "batches=1,1000000", *QUICK)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = read_manifest(folder)["bench"]
    assert set(after) == {here, "0therm4chine"} and after["0therm4chine"] == other
    assert (after[here]["measured_at"], after[here]["points"]) != before
    assert [p["batch"] for p in after[here]["points"]] == [1]
    (skip,) = after[here]["skipped"]
    assert skip["batch"] == 1000000 and "GiB" in skip["reason"] and "available" in skip["reason"]
    assert "skipped, needs about" in proc.stderr
    assert "vendor" in proc.stdout and "417.01" in proc.stdout  # the Iluvatar figure, labelled as another machine's


def test_bench_without_an_artifact_says_how_to_build_one(tmp_path):
    proc = run_zoo("bench", f"model={VARIANT}", f"out_dir={tmp_path / 'none'}", "target=openvino")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"python -m zoo convert model={VARIANT} target=openvino" in proc.stderr
