"""Acceptance: the WSL giant, resnext101_32x48d (828M parameters, 3.1 GiB in fp32), from PaddleClas.

A module of its own, whose files are deleted before tests/test_wsl_giants.py writes its 8.3 GB: a CI
machine's disk holds one giant's set at a time. Slow (about 2 minutes on 2 cores), in CI.
"""
from __future__ import annotations

import shutil

import pytest

from conftest import VARIANT, convert_giant, read_manifest
from zoo.converters.onnx_canonical import PROTOBUF_LIMIT

pytestmark = pytest.mark.slow


@pytest.fixture
def big_tmp(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path)  # each giant artifact is GBs: deleted even when the test fails


def test_paddleclas_giant_converts_and_validates(big_tmp):
    tmp_path = big_tmp
    convert_giant(tmp_path, "ppcls")
    folder = tmp_path / VARIANT / "ppcls" / "wsl" / "onnx"
    m = read_manifest(folder)
    assert m["status"] == "passed"
    assert (folder / "model.onnx.data").stat().st_size > PROTOBUF_LIMIT
    assert m["validation"]["params"]["graph"] == m["validation"]["params"]["architecture"]
    assert all(p["passed"] for p in m["validation"]["parity"]["sets"].values())
