"""Crash isolation of sweep jobs: a child that segfaults is a recorded failed job, the parent goes on."""
from __future__ import annotations

import ast
import ctypes
import os
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import manifest_of, run_zoo
from zoo.errors import SweepError, UserError
from zoo.sweep.child import JobCrashed, JobError, raise_outcome, run_isolated
from zoo.sweep.launchers import thread_env, threads_per_job


# Module-level, so the child finds them by reference (it gets this process's sys.path).
def _say(text: str) -> None:
    print(text)


def _user_error(message: str) -> None:
    raise UserError(message)


def _sweep_error(message: str) -> None:
    raise SweepError(message)


def _exit(code) -> None:
    sys.exit(code)


def _boom() -> None:
    raise ValueError("not a user error")


def _kill_self(sig: int) -> None:
    os.kill(os.getpid(), sig)


def test_a_segfaulting_child_is_a_recorded_crash_and_the_parent_survives():
    outcome = run_isolated(ctypes.string_at, 0)  # reads address 0: a real SIGSEGV in the child
    assert outcome.kind == "crashed" and outcome.signal == "SIGSEGV"
    with pytest.raises(JobCrashed) as info:
        raise_outcome(outcome)
    assert info.value.code == 1 and info.value.why == "crashed: SIGSEGV"
    assert run_isolated(_say, "still here").kind == "ok"  # this process goes on, and can run the next job


def test_a_child_killed_by_another_signal_is_named():
    outcome = run_isolated(_kill_self, signal.SIGKILL)  # what the kernel's OOM killer sends
    assert outcome.kind == "crashed" and outcome.signal == "SIGKILL"


def test_outcomes_behave_as_in_process(capfd):
    assert run_isolated(_say, "hello from the child").kind == "ok"
    assert "hello from the child" in capfd.readouterr().out  # the child writes to our stdout

    with pytest.raises(UserError) as info:
        raise_outcome(run_isolated(_user_error, "no such tag"))
    assert str(info.value) == "no such tag" and not isinstance(info.value, SweepError)
    assert info.value.exit_code == 2

    with pytest.raises(SweepError, match="ends the sweep"):
        raise_outcome(run_isolated(_sweep_error, "ends the sweep"))

    for code, expected in ((3, 3), (0, None), (None, None)):
        outcome = run_isolated(_exit, code)
        if expected is None:
            assert outcome.kind == "ok"
        else:
            with pytest.raises(SystemExit) as exc:
                raise_outcome(outcome)
            assert exc.value.code == expected and not isinstance(exc.value, JobCrashed)

    with pytest.raises(JobError, match="ValueError: not a user error"):
        raise_outcome(run_isolated(_boom))
    assert "Traceback" in capfd.readouterr().err  # the child printed its traceback


def test_thread_share_per_launcher(monkeypatch):
    monkeypatch.delenv("ZOO_THREADS", raising=False)
    joblib = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                               "n_jobs": 2})
    assert threads_per_job(joblib, cpus=2) == 1
    assert threads_per_job(joblib, cpus=16) == 8
    joblib.n_jobs = -1  # joblib: one job per core
    assert threads_per_job(joblib, cpus=8) == 1
    ray = OmegaConf.create({"_target_": "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher",
                            "ray": {"init": {}, "remote": {"num_cpus": 3}}})
    assert threads_per_job(ray, cpus=12) == 3
    basic = OmegaConf.create({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    assert threads_per_job(basic, cpus=8) is None
    assert thread_env(None) == {}
    assert thread_env(4)["OMP_NUM_THREADS"] == "4"
    monkeypatch.setenv("ZOO_THREADS", "3")  # the user's choice wins
    assert set(thread_env(1).values()) == {"3"}


def test_onnxruntime_sessions_get_the_jobs_thread_share(tmp_path, monkeypatch):
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, save

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "m.onnx"))
    from zoo import ort_session

    model = tmp_path / "m.onnx"
    monkeypatch.delenv("ZOO_THREADS", raising=False)
    assert ort_session.session(model).get_session_options().intra_op_num_threads == 0  # ONNX Runtime's default
    monkeypatch.setenv("ZOO_THREADS", "1")  # what the sweep layer gives a parallel job's child
    assert ort_session.session(model).get_session_options().intra_op_num_threads == 1
    assert ort_session.session(model, threads=2).get_session_options().intra_op_num_threads == 2  # explicit wins
    assert ort_session.session(model.read_bytes()).get_session_options().intra_op_num_threads == 1
    y = ort_session.runner(model, batch=1)(np.array([[-1, 2, -3, 4], [5, -6, 7, -8]], dtype=np.float32))
    assert y.tolist() == [[0, 2, 0, 4], [5, 0, 7, 0]]  # Relu, run in static chunks of 1
    # the zoo's own code makes no session any other way
    root = Path(__file__).resolve().parents[1] / "zoo"
    def makes_sessions(path: Path) -> bool:  # calls X.InferenceSession(...) (a string of the card's snippet does not)
        return any(isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "InferenceSession"
                   for n in ast.walk(ast.parse(path.read_text())))

    makers = [p.relative_to(root).as_posix() for p in root.rglob("*.py") if makes_sessions(p)]
    kit_scripts = {"targets/trt_engine.py", "targets/ixrt_engine.py", "targets/ixrt_inference.py", "targets/device_eval.py"}
    assert set(makers) - kit_scripts == {"ort_session.py"}


# Loaded by every Python process of the sweep below; only a job's child process (it runs
# zoo.sweep.child) is changed: the job whose config has seed=1 segfaults before its command runs.
_CRASH_SEED_1 = textwrap.dedent('''
    import sys
    if any("zoo.sweep.child" in a for a in sys.orig_argv):
        import ctypes
        import zoo.sweep.child as iso
        _capture = iso._capture
        def crash_seed_1(fn, args):
            if args and hasattr(args[0], "get") and args[0].get("seed") == 1:
                ctypes.string_at(0)
            return _capture(fn, args)
        iso._capture = crash_seed_1
''')


def test_a_sweep_survives_a_crashed_job_and_exits_1(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_CRASH_SEED_1)
    out = tmp_path / "out"
    proc = run_zoo("-m", "convert", "model=resnext50_32x4d", "source=torchvision", "target=onnx", "weights=random",
                   f"out_dir={out}", "progress=false", "seed=1,0", cwd=tmp_path,
                   env={"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"), os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 1, proc.stderr
    assert "job failed (crashed: SIGSEGV); the sweep goes on" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 1 job(s) failed: ") and "seed=1" in last and "seed=0" not in last
    assert "[PASSED]" in proc.stdout  # the job after the crash ran to the end
    m = manifest_of(out, "resnext50_32x4d", "torchvision", "IMAGENET1K_V1")
    assert m["status"] == "passed" and m["weights"]["seed"] == 0
    assert not list((Path(os.environ["ZOO_CACHE"]) / "sweeps").glob("*"))  # the failure record is cleaned up
