"""The Python API: the README's example run as written from a fresh folder, and errors that carry the
CLI's own messages."""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from conftest import run_zoo

ROOT = Path(__file__).resolve().parent.parent


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)


def _timm_101_checkpoints() -> int:
    """Counted from the registry's YAML files themselves, not through the loader the API uses."""
    n = 0
    for path in (ROOT / "zoo" / "conf" / "model").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if fnmatch(doc["name"], "resnext101*"):
            n += sum(1 for w in doc.get("weights", []) if w["source"] == "timm")
    return n


def test_the_readme_example_runs_as_written(tmp_path):
    import torchvision

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    proc = subprocess.run([sys.executable, "-c", _readme_example()], cwd=fresh, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"{_timm_101_checkpoints()} timm ResNeXt-101 checkpoints"
    assert lines[1].startswith("timm tv_in1k ")  # timm v0.6.5's name for torchvision's weights in timm
    status, primary, params = lines[2].split()
    expected = torchvision.models.ResNeXt50_32X4D_Weights.IMAGENET1K_V1.meta["num_params"]
    assert status == "passed" and int(params) == expected
    model = fresh / primary  # relative to the folder the example ran in
    assert model.is_file() and primary.startswith("artifacts/")
    manifest = yaml.safe_load((model.parent / "manifest.json").read_text())
    assert manifest["artifact"]["files"][0]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert lines[3] == "cache hit: True"


@pytest.mark.parametrize("call, cli", [
    (lambda zoo: zoo.convert("resnext50_32x4d", target="nope", weights="random"),
     ["convert", "model=resnext50_32x4d", "target=nope", "weights=random"]),
    (lambda zoo: zoo.convert("resnext50_32x4d", source="nope"), ["convert", "model=resnext50_32x4d", "source=nope"]),
    (lambda zoo: zoo.lookup("resnext77_1x1d"), ["lookup", "model=resnext77_1x1d"]),
    (lambda zoo: zoo.convert("resnext50_32x4d", weights="random", overrides={"max_drop": "-1", "data": "x"}),
     ["convert", "model=resnext50_32x4d", "weights=random", "max_drop=-1", "data=x"]),
])
def test_errors_carry_the_cli_message(tmp_path, call, cli):
    import zoo

    with pytest.raises(zoo.UserError) as raised:
        call(zoo)
    proc = run_zoo(*cli, f"out_dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {raised.value}"
    assert not any(tmp_path.iterdir())  # neither wrote anything
