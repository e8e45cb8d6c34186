"""Acceptance: the WSL giant, resnext101_32x48d (828M parameters, 3.1 GiB in fp32), from PaddleClas,
and from torch hub's WSL build to the targets that take a model that large here: fp16 ONNX and OpenVINO.

A module of its own so that tests/test_wsl_giants.py's artifact (3.3 GB) is deleted before these
write theirs: a CI machine's disk holds one giant at a time. Slow (about 5 minutes on 2 cores), in CI.
"""
from __future__ import annotations

import shutil

import pytest

from conftest import TORCH_TAG, VARIANT, convert_giant, read_manifest
from zoo.converters.onnx_canonical import PROTOBUF_LIMIT

pytestmark = pytest.mark.slow


@pytest.fixture
def big_tmp(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path)  # each giant artifact is GBs: deleted even when the test fails


@pytest.mark.parametrize("target, precision, folder", [("onnx", "fp16", "onnx-fp16"), ("openvino", "fp32", "openvino")])
def test_large_targets_pass_their_own_gates(big_tmp, target, precision, folder):
    tmp_path = big_tmp
    convert_giant(tmp_path, "torchvision", f"target={target}", f"precision={precision}")
    m = read_manifest(tmp_path / VARIANT / "torchvision" / TORCH_TAG / folder)
    assert m["status"] == "passed", m["validation"]["target"]
    sets = m["validation"]["target"]["parity"]["sets"]
    assert sets and all(s["passed"] for s in sets.values())


def test_paddleclas_giant_converts_and_validates(big_tmp):
    tmp_path = big_tmp
    convert_giant(tmp_path, "ppcls")
    folder = tmp_path / VARIANT / "ppcls" / "wsl" / "onnx"
    m = read_manifest(folder)
    assert m["status"] == "passed"
    assert (folder / "model.onnx.data").stat().st_size > PROTOBUF_LIMIT
    assert m["validation"]["params"]["graph"] == m["validation"]["params"]["architecture"]
    assert all(p["passed"] for p in m["validation"]["parity"]["sets"].values())
