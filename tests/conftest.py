"""Shared helpers: run the CLI as users do, and make checkpoints in each source's own format."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest


def run_zoo(*args: str, env: Optional[dict] = None, cwd: Optional[Path] = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout,
    )


def read_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def manifest_of(out_dir: Path, variant: str, source: str, tag: str, target: str = "onnx") -> dict:
    return read_manifest(out_dir / variant / source / tag / target)


def make_checkpoint(variant: str, source: str, path: Path, seed: int = 0, tag: Optional[str] = None) -> Path:
    """A freshly initialised model built by the source's own library, saved in the source's format."""
    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, variant)
    w = select_weights(reg, v, source, tag)
    adapter = get_adapter(source)
    model = adapter.fresh(v, w, seed)
    adapter.save_checkpoint(model, path)
    return path


VARIANT, TORCH_TAG = "resnext101_32x48d", "fb_wsl_ig1b_ft_in1k"  # the WSL giant, over 2 GiB in fp32


def convert_giant(out_dir: Path, source: str, *extra: str) -> subprocess.CompletedProcess:
    """``zoo convert`` of the WSL giant with fresh weights into ``out_dir``, asserted to succeed."""
    proc = run_zoo("convert", f"model={VARIANT}", f"source={source}", "weights=random", f"out_dir={out_dir}",
                   "progress=false", *extra, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout
    return proc


@pytest.fixture(scope="module", autouse=True)
def _module_scratch_removed(tmp_path_factory, request):
    """What a module's fixtures made with ``mktemp`` is deleted when the module ends: a converted
    artifact is 100 MB to GBs, and pytest would keep every one until the session ends (a full run
    left 23 GB behind). With ``--basetemp=DIR`` everything is kept, for a look afterwards."""
    if request.config.getoption("basetemp"):
        yield
        return
    base = tmp_path_factory.getbasetemp()
    before = set(base.iterdir())
    yield
    for path in set(base.iterdir()) - before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's cache. Each test's is a folder of its own, outside its tmp_path:
    every command may write there (the registry's snapshot), and tests look at what lands in tmp_path."""
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path_factory.mktemp("zoo-cache")))


def export_canonical(folder: Path, spec, variant: str = "resnext50_32x4d", source: str = "torchvision") -> dict:
    """The canonical ONNX of a freshly initialised (seed 0) model built by the source's own library,
    exported with ``spec`` into ``folder/model.onnx``; returns it with the model and its registry entries."""
    from zoo.converters import onnx_canonical
    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, variant)
    w = select_weights(reg, v, source, None)
    adapter = get_adapter(source)
    model = adapter.fresh(v, w, 0)
    size = effective_input(v, w).size
    adapter.export_onnx(model, folder / "raw.onnx", spec, size)
    onnx_canonical.finish(folder / "raw.onnx", folder / "model.onnx", spec, size, {})
    return {"path": folder / "model.onnx", "variant": v, "weights": w, "input": effective_input(v, w), "spec": spec,
            "adapter": adapter, "model": model}


from digits_model import Digits, make_digits  # noqa: E402


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """A small ResNeXt trained on real digit images, with its registry and image folders. Module scope:
    each module's scratch is deleted when it ends, so it trains once per module that uses it (under a minute)."""
    return make_digits(tmp_path_factory.mktemp("digits"))
