"""The one place ONNX Runtime sessions are made: CPU provider, and a thread count.

ONNX Runtime does not read OMP_NUM_THREADS, so a session left at its default starts one thread per
core; in a parallel sweep every job would do that on the same cores. Sessions made here take the
thread count they are given, or else the job's share that the sweep layer puts in ``ZOO_THREADS``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np

THREADS_ENV = "ZOO_THREADS"  # set by the sweep layer for each parallel job's child (zoo.sweep.launchers)


def job_threads() -> int:
    """This job's share of the cores (0: no limit, ONNX Runtime's default)."""
    try:
        return max(0, int(os.environ.get(THREADS_ENV) or 0))
    except ValueError:
        return 0


def session(model: Union[Path, str, bytes], threads: Optional[int] = None, basic: bool = False,
            sequential: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU over a model path or serialised bytes.

    ``threads``: intra-op threads (None: the job's share, else ONNX Runtime's default). ``basic``: the
    basic optimisation level (the full level's layout pass copies every weight of a giant). ``sequential``:
    one request at a time, so no inter-op pool (timing)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    n = job_threads() if threads is None else threads
    if n > 0:
        opts.intra_op_num_threads = n
    if sequential:
        opts.inter_op_num_threads = 1
    if basic:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def runner(model: Union[Path, str, bytes], batch: Optional[int] = None,
           threads: Optional[int] = None) -> Callable[[np.ndarray], np.ndarray]:
    """float32 batch in, the first output as float32 out; in chunks of a static ``batch`` (the last padded)."""
    from zoo.targets.base import run_static

    sess = session(model, threads)
    name = sess.get_inputs()[0].name
    return lambda x: run_static(lambda c: np.asarray(sess.run(None, {name: c})[0], dtype=np.float32), x, batch)
