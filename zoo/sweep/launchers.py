"""Launcher helpers for sweeps: each parallel job's share of the cores, the presets' ``${zoo.cpus:}``
resolver, and a sweep job's command run in a child process (``zoo.sweep.child``).

Jobs that run side by side share the machine's cores instead of each starting one thread per core:
the child gets the share in the usual thread variables and in ``ZOO_THREADS``, which the ONNX Runtime
session factory (``zoo.ort_session``) reads.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from omegaconf import OmegaConf

from zoo.ort_session import THREADS_ENV
from zoo.sweep.child import raise_outcome, run_isolated

# Environment variables each parallel job's child gets (torch reads OMP_NUM_THREADS when it is
# imported; numpy's BLAS the next two; ONNX Runtime's sessions the last). ZOO_THREADS set by the
# user overrides the computed share.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", THREADS_ENV)


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
    if os.environ.get(THREADS_ENV):
        threads = int(os.environ[THREADS_ENV])
    if not threads:
        return {}
    return {name: str(threads) for name in THREAD_ENV}


def _command_in_child(job_cfg: Any, hydra_raw: Dict[str, Any]) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals

    from zoo.commands import COMMANDS

    setup_globals()  # Hydra's own resolvers (${now:...}) for the hydra node
    hydra_root = OmegaConf.create(hydra_raw)
    OmegaConf.set_readonly(hydra_root, True)
    HydraConfig.instance().cfg = hydra_root  # commands ask whether they run in a sweep
    COMMANDS[job_cfg.command](job_cfg)


# Quick paths run in the sweep's process first, loading no backend: a combination the registry does
# not have is skipped, and a cache hit reported, without starting a process (a full sweep has many).
# Each returns True when it has done the whole job.
QUICK_PATHS = {"convert": ("zoo.commands.convert", "run_if_cached")}


def run_command_isolated(job_cfg: Any) -> None:
    """Run this sweep job's command in a child; behave as if it had run here (see the module doc)."""
    import importlib

    from hydra.core.hydra_config import HydraConfig

    register_resolvers()  # in a launcher's worker the presets' ${zoo.cpus:N} are resolved here
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

