"""The canonical ONNX is built once per (checkpoint, weights, export spec) and reused by every target.

resnext50_32x4d from torchvision with weights=random: two targets asked for at once build it once; MindIR
after onnx adds the source's weights to it without a second export; a damaged cache entry is rebuilt."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import manifest_of, run_zoo

VARIANT, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"


def _convert(out: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "zoo", "convert", f"model={VARIANT}", f"source={SOURCE}", "weights=random",
           f"out_dir={out}", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _cache_entries(out: Path):
    return sorted((out / ".canonical" / VARIANT / SOURCE / TAG).glob("[0-9a-f]*"))


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """onnx and openvino asked for at the same moment, as two jobs of a parallel sweep would."""
    out = tmp_path_factory.mktemp("reuse")
    procs = [_convert(out, "target=onnx"), _convert(out, "target=openvino")]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    return out


def test_two_targets_at_once_build_the_canonical_model_once(out):
    ms = [manifest_of(out, VARIANT, SOURCE, TAG, t) for t in ("onnx", "openvino")]
    assert sorted(m["canonical"]["reused"] for m in ms) == [False, True]
    assert ms[0]["canonical"]["key"] == ms[1]["canonical"]["key"]
    builder, reuser = sorted(ms, key=lambda m: m["canonical"]["reused"])
    assert "export" in builder["timings_s"] and not {"import", "build", "export"} & set(reuser["timings_s"])
    # the reuser's source checks are the builder's, not a second run
    assert reuser["validation"]["parity"] == builder["validation"]["parity"]
    assert len(_cache_entries(out)) == 1
    # target=onnx ships the canonical file itself: a hard link, no second copy on disk
    model = out / VARIANT / SOURCE / TAG / "onnx" / "model.onnx"
    assert os.path.samefile(model, _cache_entries(out)[0] / "model.onnx")


def test_mindir_after_onnx_adds_the_source_weights_without_a_second_export(out):
    proc = run_zoo("convert", f"model={VARIANT}", f"source={SOURCE}", "target=mindir", "weights=random",
                   f"out_dir={out}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "canonical  reused" in proc.stdout
    m = manifest_of(out, VARIANT, SOURCE, TAG, "mindir")
    assert m["status"] == "passed" and m["canonical"]["reused"] is True
    # the source model was built once more for its weights, and nothing was exported again
    assert "build" in m["timings_s"] and "export" not in m["timings_s"]
    (entry,) = _cache_entries(out)
    record = json.loads((entry / "canonical.json").read_text())
    assert record["state"] is True and record["files"]["state.npz"] == (entry / "state.npz").stat().st_size
    with np.load(entry / "state.npz") as z:  # timm's names: what the MindSpore network is built from
        assert "conv1.weight" in z.files and z["conv1.weight"].shape == (64, 3, 7, 7)


def test_a_damaged_canonical_model_is_rebuilt_not_reused(out):
    (entry,) = _cache_entries(out)
    model = entry / "model.onnx"
    os.unlink(model)  # the artifacts keep their own links; the cache's copy is cut short
    model.write_bytes(b"truncated")
    proc = run_zoo("convert", f"model={VARIANT}", f"source={SOURCE}", "target=onnx", "precision=fp16",
                   "weights=random", f"out_dir={out}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest_of(out, VARIANT, SOURCE, TAG, "onnx-fp16")
    assert m["status"] == "passed" and m["canonical"]["reused"] is False and "export" in m["timings_s"]
    assert model.stat().st_size > 1_000_000


def test_a_sweep_with_a_mindir_job_keeps_the_source_weights_for_it(tmp_path):
    proc = run_zoo("-m", "convert", f"model={VARIANT}", f"source={SOURCE}", "target=onnx,mindir", "weights=random",
                   "out_dir=out", "progress=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    first, mindir = (manifest_of(out, VARIANT, SOURCE, TAG, t) for t in ("onnx", "mindir"))
    assert first["canonical"]["reused"] is False and mindir["status"] == "passed" and mindir["canonical"]["reused"]
    # the onnx job kept the weights with the canonical model, so the MindIR job built no source model
    assert "init" in first["timings_s"] and not {"init", "build", "reference"} & set(mindir["timings_s"])
    (entry,) = _cache_entries(out)
    assert json.loads((entry / "canonical.json").read_text())["state"] is True


@pytest.mark.parametrize("words, flags, added", [
    (["target=onnx,mindir"], ["-m"], ["keep_state=true"]),
    (["target=glob(*ind*)", "model=resnext50_32x4d"], ["-m"], []),  # mindir alone: it builds with them anyway
    (["target=onnx,openvino"], ["-m"], []),  # no target needs them
    (["target=onnx,mindir", "keep_state=false"], ["-m"], []),  # the user's word stands
    (["target=mindir"], [], []),
])
def test_keep_state_is_set_for_a_sweep_that_needs_it(words, flags, added):
    from zoo.config.overrides import check_overrides

    assert check_overrides(words, flags) == [*words, *added]
