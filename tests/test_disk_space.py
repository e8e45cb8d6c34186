"""A conversion checks the free disk space first, and the estimate holds.

Each test mounts a small tmpfs as out_dir inside its own user and mount namespace (util-linux's
``unshare``), so the file system really is that small and nothing is left mounted afterwards.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from zoo.converters.disk import conversion_bytes
from zoo.registry.loader import load_registry, size_of
from zoo.registry.query import resolve_variant

VARIANT, SOURCE = "resnext50_32x4d", "torchvision"


def _can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                           capture_output=True, text=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="needs unshare and a tmpfs mount in a user namespace")


def _convert_on_tmpfs(out_dir, size_mb: int) -> subprocess.CompletedProcess:
    out_dir.mkdir()
    cmd = (f"mount -t tmpfs -o size={size_mb}m tmpfs {out_dir} && "
           f"{sys.executable} -m zoo convert model={VARIANT} source={SOURCE} weights=random "
           f"out_dir={out_dir} progress=false; rc=$?; find {out_dir} -type f; exit $rc")
    return subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=900)


def _need_mb() -> int:
    v = resolve_variant(load_registry(), VARIANT)
    return conversion_bytes(size_of(v.arch).fp32_bytes, third_copy=False) // 2**20  # onnx fp32: a hard link


def test_too_little_space_is_one_line_before_any_work_and_leaves_no_files(tmp_path):
    proc = _convert_on_tmpfs(tmp_path / "small", 64)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: not enough disk space"), proc.stderr
    assert f"{VARIANT} -> onnx fp32" in lines[0] and "out_dir=" in lines[0]
    left = [f for f in proc.stdout.split() if not f.endswith(".lock")]  # the build lock stays, by design
    assert left == []  # no staging folder, no checkpoint


def test_the_estimate_is_enough_for_the_conversion(tmp_path):
    """A file system just the estimated size holds the whole conversion (the estimate is not too low)."""
    proc = _convert_on_tmpfs(tmp_path / "fits", _need_mb() + 16)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = proc.stdout.split()
    assert any(f.endswith("/onnx/model.onnx") and f"/{VARIANT}/{SOURCE}/" in f for f in files), files
    assert not any(".staging-" in f or ".work" in f for f in files), files


def test_a_disk_that_fills_up_after_the_check_is_one_line_and_leaves_no_files(tmp_path):
    """Another program takes the space after the check (here: the check is switched off in the child)."""
    from conftest import make_checkpoint

    ckpt = make_checkpoint(VARIANT, SOURCE, tmp_path / "model.pth")  # outside the small disk
    out = tmp_path / "small"
    out.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(
        "import sys\n"
        "import zoo.converters.disk as disk\n"
        "disk.require_free = lambda *args: None  # fault injection: the check saw room that is gone now\n"
        "from zoo.cli import main\n"
        f"sys.argv = ['zoo', 'convert', 'model={VARIANT}', 'source={SOURCE}', 'weights={ckpt}', 'out_dir={out}',"
        " 'progress=false']\n"
        "main()\n")
    cmd = (f"mount -t tmpfs -o size=64m tmpfs {out} && {sys.executable} {driver}; rc=$?; "
           f"find {out} -type f; exit $rc")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the disk filled up while converting"), proc.stderr
    assert [f for f in proc.stdout.split() if not f.endswith(".lock")] == []
