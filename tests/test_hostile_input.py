"""Hostile input: overrides that name paths, code-loading Hydra flags, special files as outputs, YAML bombs.

Each is refused before any work with exit 2 and one line, and nothing is written where it should not be."""
from __future__ import annotations

import os
import pickle
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_zoo

from zoo.errors import UserError
from zoo.registry.loader import PACKAGE_CONF, read_yaml
from zoo.store import plain_name, staged, write_json


def assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def tree(root: Path) -> list:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- 1. registry names are path parts ------------------------------------------------------------------

@pytest.mark.parametrize("args, needles", [
    (["convert", "model=resnext50_32x4d", "weights=random", "model.weights.0.tag=../../../ESCAPED"],
     ["tag '../../../ESCAPED' is not a plain name"]),
    (["validate", "model=resnext50_32x4d", "golden=true", "model.weights.0.tag=x/../../ESCAPED"],
     ["tag 'x/../../ESCAPED'"]),
    (["calib", "data=.", "target=vacc", "target.name=../../ESCAPED"], ["target '../../ESCAPED' is not a plain name"]),
])
def test_override_cannot_leave_out_dir(tmp_path, args, needles):
    work = tmp_path / "work"
    out = work / "p1" / "p2" / "out"
    (work / "p1" / "p2").mkdir(parents=True)
    assert_refused(run_zoo(*args, f"out_dir={out}", "progress=false", cwd=work, timeout=120),
                   *needles, "letters, digits")
    assert tree(work) == ["p1", "p1/p2"]  # refused before anything was made: not even out_dir


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\\b", "x\0y", "tag with space"])
def test_plain_name_refuses(name):
    with pytest.raises(UserError, match="not a plain name"):
        plain_name(name, "tag")


def test_plain_name_accepts_registry_names():
    for name in ("IMAGENET1K_V2", "tv_in1k", "a1h.in1k", "onnx-fp16", "..a", "a..b"):
        assert plain_name(name, "tag") == name


# --- 2. Hydra flags that load code ---------------------------------------------------------------------

class _Marker:
    """Unpickling it creates a file: proof that the pickle was loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("flags", [["--experimental-rerun", "{f}"], ["--experimental-rerun={f}"], ["--exp", "{f}"]])
def test_experimental_rerun_is_refused(tmp_path, flags):
    marker, pkl = tmp_path / "loaded", tmp_path / "config.pickle"
    pkl.write_bytes(pickle.dumps(_Marker(marker)))
    args = [a.format(f=pkl) for a in flags]
    line = assert_refused(run_zoo(*args, "list", timeout=60), "--experimental-rerun", "not supported", "unpickles")
    assert not marker.exists(), line


# --- 3. outputs never replace special files ------------------------------------------------------------

def _special(kind: str, folder: Path) -> Path:
    path = folder / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path)
    elif kind == "dangling":
        path.symlink_to(folder / "nowhere")
    elif kind == "link_to_file":
        (folder / "real.html").write_text("mine\n")
        path.symlink_to(folder / "real.html")
    return path


@pytest.mark.parametrize("kind, needles", [
    ("fifo", ["is a FIFO"]),
    ("loop", ["symbolic link that leads nowhere"]),
    ("dangling", ["symbolic link that leads nowhere"]),
    ("link_to_file", ["symbolic link to a regular file", "links are not followed"]),
])
def test_report_file_refuses_special_files(tmp_path, kind, needles):
    out = tmp_path / "out"
    out.mkdir()
    path = _special(kind, tmp_path)
    before = os.lstat(path)
    assert_refused(run_zoo("report", f"out_dir={out}", f"report_file={path}", timeout=60),
                   str(path), *needles, "expected a regular file or a new path")
    after = os.lstat(path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    assert tree(out) == []
    if kind == "link_to_file":
        assert (tmp_path / "real.html").read_text() == "mine\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_report_file_dev_null_untouched(tmp_path):
    before = os.stat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    assert_refused(run_zoo("report", f"out_dir={tmp_path}", "report_file=/dev/null", timeout=60),
                   "/dev/null is a character device")
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    assert tree(tmp_path) == []


def test_report_file_regular_file_is_replaced_atomically(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("old\n")
    proc = run_zoo("report", f"out_dir={tmp_path}", f"report_file={page}", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert page.read_text().startswith("<!DOCTYPE html>") and stat.S_ISREG(os.lstat(page).st_mode)
    assert tree(tmp_path) == ["page.html"]


def test_shared_writers_refuse_special_files(tmp_path):
    """Manifests, calib sets and kits are written through the same helpers as the report."""
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="is a FIFO"):
        write_json(fifo, {"a": 1})
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path / "elsewhere").mkdir()
    link = tmp_path / "onnx"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="symbolic link to a folder: expected a folder"):
        with staged(link):
            pass
    assert link.is_symlink() and tree(tmp_path / "elsewhere") == []
    write_json(tmp_path / "new.json", {"a": 1})
    assert (tmp_path / "new.json").read_text() == '{\n  "a": 1\n}\n'


# --- 4. YAML alias bombs ------------------------------------------------------------------------------

def _bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def bombed_conf(tmp_path_factory) -> Path:
    conf = tmp_path_factory.mktemp("registry") / "conf"
    shutil.copytree(PACKAGE_CONF, conf)
    (conf / "model" / "resnext_bomb.yaml").write_text(_bomb())
    return conf


@pytest.mark.parametrize("args", [["--help"], ["list"], ["lookup", "model=resnext50_32x4d"]])
def test_alias_bomb_in_registry_is_refused_fast(bombed_conf, args):
    start = time.monotonic()
    proc = run_zoo(*args, env={"ZOO_CONF": str(bombed_conf)}, timeout=30)
    assert time.monotonic() - start < 10
    assert_refused(proc, str(bombed_conf / "model" / "resnext_bomb.yaml"), "aliases expand")


def test_alias_bomb_where_only_hydra_reads_is_refused(tmp_path):
    """A file Hydra composes (a target's options) and a --config-dir folder are checked before Hydra runs."""
    conf = tmp_path / "conf"
    shutil.copytree(PACKAGE_CONF, conf)
    onnx = conf / "target" / "onnx.yaml"
    onnx.write_text(onnx.read_text() + _bomb())
    assert_refused(run_zoo("--cfg", "job", "list", env={"ZOO_CONF": str(conf)}, timeout=30), str(onnx), "aliases")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "more.yaml").write_text(_bomb())
    assert_refused(run_zoo("list", "--config-dir", str(extra), timeout=30), str(extra / "more.yaml"), "aliases")


def test_recursive_alias_and_deep_nesting_are_one_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("a: &a [1, *a]\n")
    with pytest.raises(UserError, match="recursive alias"):
        read_yaml(path)
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match="nested too deeply"):
        read_yaml(path)


def test_modest_aliases_still_load(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {x: 1, y: [1, 2]}\nc: {<<: *b, z: 3}\nd: *b\n" + _bomb(levels=3))
    doc = read_yaml(path)
    assert doc["c"] == {"x": 1, "y": [1, 2], "z": 3} and len(doc["l2"]) == 9


# --- 12. data folders are scanned within bounds ----------------------------------------------------------

def _nested(root: Path, levels: int) -> Path:
    deep = root.joinpath(*(f"d{i}" for i in range(levels)))
    deep.mkdir(parents=True)
    (deep / "img.jpg").write_bytes(b"not decoded: the scan stops first")
    return root


def _looped(root: Path) -> Path:
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "img.jpg").write_bytes(b"x")
    (root / "cls" / "again").symlink_to(root / "cls")  # links are followed, as torchvision does
    return root


@pytest.mark.parametrize("kind", ["deep", "link loop", "proc"])
def test_validate_data_scan_is_bounded(tmp_path, kind):
    if kind == "proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    data = {"deep": lambda: _nested(tmp_path / "data", 10), "link loop": lambda: _looped(tmp_path / "data"),
            "proc": lambda: Path("/proc")}[kind]()
    start = time.monotonic()
    proc = run_zoo("validate", "model=resnext50_32x4d", f"data={data}", f"out_dir={tmp_path / 'out'}", timeout=60)
    assert time.monotonic() - start < 15
    assert_refused(proc, f"{data}: folders nest more than 8 levels below it", "the bound on scanning a data folder")
    assert not (tmp_path / "out").exists()


def test_scan_bounds_entries_and_says_what_it_is_doing(tmp_path, monkeypatch):
    from io import StringIO

    from zoo.calibration import image_files
    from zoo.data import scan
    from zoo.data.dataset import open_dataset

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2100):
            (tmp_path / c / f"{i}.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"more than 1,000 files and folders under it"):
        open_dataset(tmp_path, max_entries=1000)
    assert len(open_dataset(tmp_path).samples) == 4200  # within the default bounds: read as before

    monkeypatch.setattr(scan, "NOTICE_AFTER_S", 0.0)  # a scan this small is too quick to announce otherwise
    out = StringIO()
    assert len(scan.Scan(tmp_path, stream=out).files(tmp_path, 0, lambda n: n.endswith(".jpg"))) == 4200
    (line,) = out.getvalue().splitlines()
    assert line == f"[zoo] scanning {tmp_path} for images: 4,096 files and folders so far (stops past 5,000,000) ..."

    with pytest.raises(UserError, match="nest more than 8 levels"):  # calib's reader has the same bounds
        image_files(_nested(tmp_path / "deep", 10))


# --- 9. labels=FILE is a key, not a config group --------------------------------------------------------

def test_labels_file_reaches_validate(tmp_path):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "a.jpg").write_bytes(b"x")
    bad = tmp_path / "absent.txt"  # Hydra used to take `labels` for the folder of class names: exit 1, many lines
    assert_refused(run_zoo("validate", "model=resnext50_32x4d", f"data={tmp_path / 'val'}", f"labels={bad}",
                           timeout=60), f"label file {bad} does not exist")


# --- 6. a truncated or malformed safetensors file is one line ------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "header"])
def test_a_broken_safetensors_file_is_one_line(tmp_path, damage):
    import torch
    from safetensors.torch import save_file

    from zoo.converters.sources.timm import TimmAdapter

    whole = tmp_path / "whole.safetensors"
    save_file({"w": torch.zeros(1000)}, str(whole))
    data = whole.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:8] + b"{not json" + data[17:])
    with pytest.raises(UserError) as e:
        TimmAdapter().load_checkpoint(broken)
    assert str(broken) in str(e.value) and "not a readable safetensors file" in str(e.value)
    assert "\n" not in str(e.value)
