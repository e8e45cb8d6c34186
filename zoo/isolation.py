"""Run one sweep job in a child process, so a native crash fails that job and not the whole sweep.

A backend that segfaults (a converter's C++ library, a runtime's kernel) kills the process it runs
in. In a sweep that process would be the launcher's worker, or with the basic launcher the sweep
itself. :func:`run_isolated` runs a picklable function in a fresh interpreter, and
:func:`raise_outcome` turns what happened there back into what the function would have done in
this process: a ``UserError`` / ``SweepError`` with the same message, a ``SystemExit`` with the
same code, or, for a child killed by a signal, a :class:`JobCrashed` that the CLI records as a
failed job.

A fresh interpreter rather than ``multiprocessing``: it does not re-import the launcher worker's
``__main__`` (a Ray or loky worker script) and works the same under every launcher.

This module also sizes each parallel job's thread pools: jobs that run side by side share the
machine's cores instead of each starting one thread per core.
"""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

from omegaconf import OmegaConf

from zoo.errors import SweepError, Unavailable, UserError

# Environment variables each parallel job's child gets (torch reads OMP_NUM_THREADS when it is
# imported; numpy's BLAS the other two). ZOO_THREADS set by the user overrides the computed share.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ZOO_THREADS")


@dataclass(frozen=True)
class Outcome:
    """How a child ended: ``ok``, ``user_error``, ``exit``, ``error`` (an exception) or ``crashed``."""

    kind: str
    exit_code: int = 0
    message: str = ""
    sweep_error: bool = False  # a user_error that no job of the sweep can get past
    unavailable: bool = False  # a user_error saying the combination does not exist (skipped)
    signal: Optional[str] = None  # crashed: the signal's name (SIGSEGV, SIGKILL from the OOM killer ...)


class JobCrashed(SystemExit):
    """A job's process was killed by a signal: a failed job (exit 1), with the signal named."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(1)
        self.why = f"crashed: {signal_name}"


class JobError(RuntimeError):
    """An unexpected exception in a job's child process; its traceback is already on stderr."""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_CHILD = "import sys; from zoo.isolation import _child_main; _child_main(sys.argv[1])"


def run_isolated(fn: Callable[..., Any], *args: Any, env: Optional[Mapping[str, str]] = None) -> Outcome:
    """Call ``fn(*args)`` in a fresh Python process and report how it ended.

    ``fn`` and ``args`` must be picklable (``fn`` by reference: a module-level function). The child
    inherits this process's stdout, stderr, ``sys.path`` and environment (plus ``env``).
    """
    payload = pickle.dumps(list(sys.path)) + pickle.dumps((fn, args))
    with tempfile.TemporaryDirectory(prefix="zoo-job-") as tmp:
        result = Path(tmp) / "outcome.pickle"
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # keep this process's lines before the child's
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(result)], input=payload,
                              env={**os.environ, **(env or {})})
        if proc.returncode < 0:
            return Outcome("crashed", 1, f"killed by {signal_name(-proc.returncode)}",
                           signal=signal_name(-proc.returncode))
        try:
            return pickle.loads(result.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            code = proc.returncode or 1
            return Outcome("exit", code, f"the job's process ended (exit {code}) without reporting how")


def raise_outcome(outcome: Outcome) -> None:
    """Do in this process what the child's function did: return, or raise the same kind of error."""
    if outcome.kind == "ok":
        return
    if outcome.kind == "user_error":
        kind = SweepError if outcome.sweep_error else Unavailable if outcome.unavailable else UserError
        err = kind(outcome.message)
        err.exit_code = outcome.exit_code
        raise err
    if outcome.kind == "exit":
        raise SystemExit(outcome.exit_code)
    if outcome.kind == "crashed":
        raise JobCrashed(outcome.signal or "a signal")
    raise JobError(outcome.message)


def _capture(fn: Callable[..., Any], args: tuple) -> Outcome:
    try:
        fn(*args)
        return Outcome("ok")
    except UserError as e:
        return Outcome("user_error", e.exit_code, str(e), sweep_error=isinstance(e, SweepError),
                       unavailable=isinstance(e, Unavailable))
    except SystemExit as e:
        code = e.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)  # sys.exit("message") prints the message and exits 1
            code = 1
        return Outcome("ok") if code == 0 else Outcome("exit", code)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises JobError
        traceback.print_exc()
        return Outcome("error", 1, f"{type(e).__name__}: {e}")


def _child_main(result_path: str) -> None:
    stdin = sys.stdin.buffer
    for entry in reversed(pickle.load(stdin)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    fn, args = pickle.load(stdin)
    outcome = _capture(fn, args)
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(outcome, f)
    os.replace(tmp, result_path)


# ------------------------------------------------------------------ threads per parallel job


def cpu_count() -> int:
    """Cores this process may run on (the affinity mask, which cgroups and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpus_resolver(divisor: Any = 1) -> int:
    return max(1, cpu_count() // max(1, int(divisor)))


def register_resolvers() -> None:
    """``${zoo.cpus:}`` (cores here) and ``${zoo.cpus:N}`` (cores // N) for the launcher presets."""
    if not OmegaConf.has_resolver("zoo.cpus"):
        OmegaConf.register_new_resolver("zoo.cpus", _cpus_resolver)


register_resolvers()  # a launcher's worker resolves the presets too, and imports this module first


def threads_per_job(launcher: Any, cpus: Optional[int] = None) -> Optional[int]:
    """Threads each job of a parallel launcher should use (cores // jobs at once); None: no limit.

    joblib runs ``n_jobs`` jobs at once; a Ray job holds ``ray.remote.num_cpus`` cores; a SLURM job
    has ``cpus_per_task``. The basic launcher runs one job at a time, which may use every core.
    """
    cpus = cpus or cpu_count()
    target = str(OmegaConf.select(launcher, "_target_", default="") or "")
    if "joblib" in target:
        n = int(OmegaConf.select(launcher, "n_jobs", default=-1) or -1)
        jobs = n if n > 0 else max(1, cpus + 1 + n)  # joblib: -1 all cores, -2 all but one ...
        return max(1, cpus // jobs)
    if "ray" in target:
        per_job = OmegaConf.select(launcher, "ray.remote.num_cpus", default=None)
        return max(1, int(per_job)) if per_job else 1  # Ray gives a task 1 core unless told otherwise
    if "submitit" in target:
        per_task = OmegaConf.select(launcher, "cpus_per_task", default=None)
        return max(1, int(per_task)) if per_task else None
    return None


def thread_env(threads: Optional[int]) -> Dict[str, str]:
    """The environment that holds a job's child to ``threads`` (``ZOO_THREADS`` set here wins)."""
    if os.environ.get("ZOO_THREADS"):
        threads = int(os.environ["ZOO_THREADS"])
    if not threads:
        return {}
    return {name: str(threads) for name in THREAD_ENV}


def apply_thread_limit() -> None:
    """In a job's child: hold ONNX Runtime sessions to ``ZOO_THREADS`` intra-op threads.

    torch and the BLAS libraries read the environment themselves. ONNX Runtime does not, and its
    sessions are created in many places with default options (one thread per core), so sessions
    created without a thread count get the job's share here.
    """
    threads = int(os.environ.get("ZOO_THREADS") or 0)
    if threads <= 0:
        return
    try:
        import onnxruntime as ort
    except ImportError:
        return
    original = ort.InferenceSession.__init__
    if getattr(original, "_zoo_threads", None) is not None:
        return

    def __init__(self, path_or_bytes, sess_options=None, *args, **kwargs):  # noqa: N807
        if sess_options is None:
            sess_options = ort.SessionOptions()
        if sess_options.intra_op_num_threads == 0:
            sess_options.intra_op_num_threads = threads
        original(self, path_or_bytes, sess_options, *args, **kwargs)

    __init__._zoo_threads = threads  # type: ignore[attr-defined]
    ort.InferenceSession.__init__ = __init__


# ------------------------------------------------------------------ a zoo command in a child


def _command_in_child(job_cfg: Any, hydra_raw: Dict[str, Any]) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals

    from zoo.commands import COMMANDS

    setup_globals()  # Hydra's own resolvers (${now:...}) for the hydra node
    hydra_root = OmegaConf.create(hydra_raw)
    OmegaConf.set_readonly(hydra_root, True)
    HydraConfig.instance().cfg = hydra_root  # commands ask whether they run in a sweep
    apply_thread_limit()
    COMMANDS[job_cfg.command](job_cfg)


# Quick paths run in the sweep's process first, loading no backend: a combination the registry does
# not have is skipped, and a cache hit reported, without starting a process (a full sweep has many).
# Each returns True when it has done the whole job.
QUICK_PATHS = {"convert": ("zoo.commands.convert", "run_if_cached")}


def run_command_isolated(job_cfg: Any) -> None:
    """Run this sweep job's command in a child; behave as if it had run here (see the module doc)."""
    import importlib

    from hydra.core.hydra_config import HydraConfig

    if job_cfg.command in QUICK_PATHS:
        module, function = QUICK_PATHS[job_cfg.command]
        if getattr(importlib.import_module(module), function)(job_cfg):
            return
    hydra = HydraConfig.instance().cfg
    threads = threads_per_job(hydra.hydra.launcher)
    # As plain containers: a launcher worker may hold a second copy of a plugin's config classes,
    # which pickle refuses to name.
    hydra_raw = OmegaConf.to_container(hydra, resolve=False)
    raise_outcome(run_isolated(_command_in_child, job_cfg, hydra_raw, env=thread_env(threads)))

