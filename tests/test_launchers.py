"""The launcher presets for real: parallel sweeps through joblib and a local Ray instance."""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from conftest import manifest_of, run_zoo
from zoo.sweep.launchers import cpu_count
from zoo.registry.loader import load_registry
from zoo.registry.query import resolve_variant, select_weights

VARIANT = "resnext50_32x4d"


@pytest.fixture(autouse=True)
def _no_thread_override(monkeypatch):
    monkeypatch.delenv("ZOO_THREADS", raising=False)  # the tests check the share the presets compute

SOURCES = ("torchvision", "timm")

# Loaded by every Python process of the sweep; a job's child (it runs zoo.sweep.child) writes, when it
# ends, the thread settings it ran with into ZOO_TEST_THREADS_DIR.
_REPORT_THREADS = textwrap.dedent('''
    import atexit, json, os, sys
    if any("zoo.sweep.child" in a for a in sys.orig_argv) and os.environ.get("ZOO_TEST_THREADS_DIR"):
        def _report():
            torch = sys.modules.get("torch")
            seen = {"ZOO_THREADS": os.environ.get("ZOO_THREADS"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "torch": torch.get_num_threads() if torch else None}
            path = os.path.join(os.environ["ZOO_TEST_THREADS_DIR"], f"{os.getpid()}.json")
            with open(path, "w") as f:
                json.dump(seen, f)
        atexit.register(_report)
''')


def _sweep(tmp_path: Path, launcher: str, *extra: str, timeout: int = 600):
    site, seen = tmp_path / "site", tmp_path / "threads"
    site.mkdir()
    seen.mkdir()
    (site / "sitecustomize.py").write_text(_REPORT_THREADS)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "ZOO_TEST_THREADS_DIR": str(seen)}
    proc = run_zoo("-m", "convert", f"model={VARIANT}", f"source={','.join(SOURCES)}", "target=onnx",
                   "weights=random", f"out_dir={tmp_path / 'out'}", "progress=false", f"hydra/launcher={launcher}",
                   *extra, cwd=tmp_path, env=env, timeout=timeout)
    threads = [json.loads(p.read_text()) for p in sorted(seen.glob("*.json"))]
    return proc, threads


def _assert_both_converted(tmp_path: Path, proc) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    reg = load_registry()
    v = resolve_variant(reg, VARIANT)
    for source in SOURCES:
        tag = select_weights(reg, v, source, None).tag
        assert f"{VARIANT}  {source}/{tag} -> onnx fp32   [PASSED]" in proc.stdout, proc.stdout[-3000:]
        m = manifest_of(tmp_path / "out", VARIANT, source, tag)
        assert m["status"] == "passed" and m["weights"]["mode"] == "random"
        assert (tmp_path / "out" / VARIANT / source / tag / "onnx" / "model.onnx").is_file()


def test_joblib_preset_runs_jobs_in_parallel_with_a_share_of_the_cores(tmp_path):
    proc, threads = _sweep(tmp_path, "zoo_joblib")
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout  # the preset's launcher, not the basic one
    _assert_both_converted(tmp_path, proc)
    share = str(max(1, cpu_count() // 2))  # n_jobs=2 in the preset
    assert len(threads) == 2, threads  # one child process per job
    for t in threads:
        assert t["ZOO_THREADS"] == t["OMP_NUM_THREADS"] == share
        assert t["torch"] == int(share)  # torch did not start one thread per core


@pytest.mark.slow
def test_ray_preset_starts_a_local_instance_and_runs_the_jobs(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    proc, threads = _sweep(tmp_path, "zoo_ray")
    assert "Started a local Ray instance" in proc.stderr + proc.stdout
    _assert_both_converted(tmp_path, proc)
    assert len(threads) == 2 and all(t["torch"] == max(1, cpu_count() // 2) for t in threads), threads


def test_the_slurm_preset_composes_with_the_plugins_schema(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = run_zoo("--cfg", "hydra", "list", "hydra/launcher=zoo_slurm", "hydra.launcher.partition=cpu",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "SlurmLauncher" in proc.stdout and "partition: cpu" in proc.stdout and "mem_gb:" in proc.stdout


def test_a_preset_whose_plugin_is_not_installed_is_one_user_error(monkeypatch):
    import importlib.util

    from zoo import cli
    from zoo.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.") else real(name, *a))
    for preset, extra in (("zoo_joblib", "sweep"), ("zoo_ray", "ray"), ("zoo_slurm", "slurm")):
        with pytest.raises(UserError, match=rf"pip install 'resnext-zoo\[{extra}\]'"):
            cli.check_overrides([f"hydra/launcher={preset}"])
