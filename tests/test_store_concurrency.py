"""Two jobs asking for the same artifact at once: one builds, the other waits and gets a cache hit."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import manifest_of
from zoo.store import sha256_of


def test_two_concurrent_builds_of_one_artifact_leave_one_complete_artifact(tmp_path):
    cmd = [sys.executable, "-m", "zoo", "convert", "model=resnext50_32x4d", "source=torchvision", "weights=random",
           f"out_dir={tmp_path}"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    stdout = [o[0] for o in outs]
    assert sum("(cache hit)" in o for o in stdout) == 1  # the second one waited, then found the first's build
    assert sum("waiting for another build" in o[1] for o in outs) == 1
    m = manifest_of(tmp_path, "resnext50_32x4d", "torchvision", "IMAGENET1K_V1")
    folder = tmp_path / "resnext50_32x4d" / "torchvision" / "IMAGENET1K_V1" / "onnx"
    assert m["status"] == "passed"
    assert all(sha256_of(folder / f["name"]) == f["sha256"] for f in m["artifact"]["files"])
    leftovers = [p.name for p in folder.parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]
    assert leftovers == []
    assert json.loads((folder / "manifest.json").read_text())["key"] == m["key"]
