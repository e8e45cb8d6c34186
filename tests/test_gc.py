"""Staging folders left by a killed build: their name records the owning process and host, and the next
`staged` of the same folder or `zoo gc` removes them once that process has ended, whatever their age."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import run_zoo

from zoo.gc import Known, plan
from zoo.store import host_id, staged, staging_owner, staging_owner_gone

VARIANT, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"
KNOWN = Known(weights={VARIANT: {SOURCE: {TAG}}}, aliases={}, precisions={"onnx": ["fp32", "fp16", "int8"]})

_CHILD = """
import sys, time
from pathlib import Path
from zoo.store import staged
with staged(Path(sys.argv[1])) as stage:
    (stage / "model.onnx").write_bytes(b"x" * 4096)
    print(stage, flush=True)
    time.sleep(60)
"""


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()  # reaped: the pid no longer names a process
    return p.pid


def leftover(tag: Path, name: str, age_s: float = 0.0) -> Path:
    folder = tag / name
    (folder / ".work").mkdir(parents=True)
    (folder / ".work" / "raw.onnx").write_bytes(b"z" * 2000)
    when = time.time() - age_s
    for p in (folder / ".work" / "raw.onnx", folder / ".work", folder):
        os.utime(p, (when, when))
    return folder


def test_the_next_staged_run_removes_the_stage_of_a_killed_build(tmp_path):
    folder = tmp_path / "a" / "onnx"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        stage = Path(child.stdout.readline().strip())
        assert stage.is_dir() and staging_owner(stage.name) == (host_id(), child.pid)
        assert staging_owner_gone(stage.name) is False
    finally:
        child.kill()  # SIGKILL: no clean-up of its own runs
        child.wait()
        child.stdout.close()
    assert stage.is_dir() and staging_owner_gone(stage.name) is True
    with staged(folder) as s:
        (s / "model.onnx").write_bytes(b"y")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["onnx"]
    assert (folder / "model.onnx").read_bytes() == b"y"


def test_gc_judges_a_staging_folder_by_its_owner_before_its_age(tmp_path):
    tag = tmp_path / VARIANT / SOURCE / TAG
    dead = leftover(tag, f".onnx.staging-{host_id()}-{dead_pid()}-fresh")               # written just now
    running = leftover(tag, f".onnx.staging-{host_id()}-{os.getpid()}-old", 10 * 3600)   # old, but alive
    elsewhere = leftover(tag, f".onnx.staging-000000000000-{dead_pid()}-x")              # another host: age
    unnamed = leftover(tag, ".onnx.staging-a1b2c3", 3 * 3600)                            # no owner: age

    found = plan(tmp_path, KNOWN, time.time(), min_age_s=2 * 3600)
    removed = {g.path: g.reason for g in found.remove}
    kept = {g.path: g.reason for g in found.kept}
    assert set(removed) == {dead, unnamed} and set(kept) == {running, elsewhere}
    assert removed[dead].endswith("on this host has ended") and "3.0 h ago" in removed[unnamed]
    assert "is still running" in kept[running] and "a running build may own it" in kept[elsewhere]

    r = run_zoo("gc", f"out_dir={tmp_path}", "apply=true", timeout=120)
    assert r.returncode == 0, r.stderr
    assert not dead.exists() and not unnamed.exists() and running.is_dir() and elsewhere.is_dir()
    assert "removed 2 folder(s)" in r.stderr


def test_gc_judges_the_canonical_models_like_artifacts(tmp_path):
    """A complete canonical model of a registry checkpoint stays; an unfinished one, or one of a checkpoint
    the registry no longer has, goes; a stranger's folder without a record is not ours to judge."""
    cache = tmp_path / ".canonical"

    def canonical(*parts: str, record: bool = True) -> Path:
        folder = cache.joinpath(*parts)
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"m" * 1000)
        if record:
            (folder / "canonical.json").write_text("{}")
        return folder

    complete = canonical(VARIANT, SOURCE, TAG, "0123456789abcdef")
    unfinished = canonical(VARIANT, SOURCE, TAG, "fedcba9876543210", record=False)
    gone_tag = canonical(VARIANT, SOURCE, "OLD_TAG", "00000000000000aa")
    stranger = canonical("notes", "a", "b", "c", record=False)

    found = plan(tmp_path, KNOWN, time.time(), min_age_s=0)
    removed = {g.path: g.reason for g in found.remove}
    assert set(removed) == {unfinished, gone_tag.parent}
    assert removed[unfinished] == "no canonical.json: not a complete canonical model"
    assert "has no tag 'OLD_TAG'" in removed[gone_tag.parent]
    assert complete.is_dir() and stranger.is_dir() and not found.kept
