"""Acceptance of the targets: resnext50_32x4d and resnext101_32x8d, from torchvision and from ppcls,
with weights=random, to every target and precision. Runnable artifacts pass their parity gate
against the canonical ONNX; vendor kits are produced and pass every kit check, and say plainly that
their compiler was not run here. Slow (each is a full conversion), and part of CI.
"""
from __future__ import annotations

import pytest

from conftest import manifest_of, run_zoo
from zoo.converters.pipeline import artifact_folder_name

PAIRS = [("resnext50_32x4d", "torchvision", "IMAGENET1K_V1"), ("resnext50_32x4d", "ppcls", "pretrained"),
         ("resnext101_32x8d", "torchvision", "IMAGENET1K_V1"), ("resnext101_32x8d", "ppcls", "wsl")]
RUNNABLE = [("onnx", "fp16"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "fp16"), ("mindir", "fp32")]
KITS = [("ixrt", "fp16"), ("ixrt", "int8"), ("vacc", "fp16"), ("vacc", "int8"), ("bpu", "int8")]
MIN_COSINE = {"fp32": 0.99999, "fp16": 0.999, "int8": 0.99}


def _cases():
    for variant, source, tag in PAIRS:
        for target, precision in RUNNABLE + KITS:
            yield pytest.param(variant, source, tag, target, precision, id=f"{variant}-{source}-{target}-{precision}")


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("acceptance")


@pytest.mark.slow
@pytest.mark.parametrize("variant, source, tag, target, precision", list(_cases()))
def test_target_builds_and_validates(out_dir, variant, source, tag, target, precision):
    # small calibration sets keep CI time in bounds; the defaults are the vendors' sizes
    calib = {"onnx": "target.int8.calib_images=8", "ixrt": "target.quant.calib_images=8",
             "vacc": "target.calib_images=8", "bpu": "target.calib_images=8"}
    extra = [calib[target]] if precision == "int8" else []
    proc = run_zoo("convert", f"model={variant}", f"source={source}", f"target={target}", f"precision={precision}",
                   "weights=random", f"out_dir={out_dir}", "progress=false", *extra, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    m = manifest_of(out_dir, variant, source, tag, artifact_folder_name(target, precision))
    v = m["validation"]
    assert m["status"] == "passed"
    assert v["params"]["graph"] == v["params"]["architecture"] and v["macs"]["graph"] == v["macs"]["architecture"]
    assert all(c["passed"] for c in v["target"]["checks"]), v["target"]["checks"]
    if (target, precision) in RUNNABLE:
        sets = v["target"]["parity"]["sets"]
        gated = {n: p for n, p in sets.items() if p["gated"]}
        assert "images" in gated and all(p["passed"] and p["cosine"] >= MIN_COSINE[precision] for p in gated.values()), sets
        assert all(p["top1_agreement"] is not None for p in sets.values())
        assert m["artifact"]["compiled"]
    else:
        assert v["target"]["checks"], "a kit is validated"
        assert m["artifact"]["compiled"] is False and m["artifact"]["commands"]
        assert "not run" in proc.stdout
        assert not any(f["name"].endswith((".engine", ".bin", ".so")) and f["size"] == 0 for f in m["artifact"]["files"])
