"""One measurement point in a process of its own: ``python -m zoo.bench.worker REQUEST.json``.

A process per (artifact, batch): each runtime's threads and memory are its own, the peak memory read
at the end belongs to that batch alone, MindSpore never shares a process with another runtime (and
compiles one input shape per process), and a batch that crashes or is killed fails only its point.
The request is JSON (target, artifact file, precision, threads, batch, input shape, the measuring
settings); the last line on stdout is the JSON result.
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np


def run(req: Dict[str, Any]) -> Dict[str, Any]:
    from zoo.bench.measure import measure
    from zoo.targets import get_target

    session = get_target(req["target"]).native_session(Path(req["primary"]), req["precision"], int(req["threads"]),
                                                         int(req["batch"]))
    if session is None:
        raise RuntimeError(f"target {req['target']} has no runtime here")
    shape = [int(req["batch"]), *req["shape"]]
    x = np.random.default_rng(int(req.get("seed", 0))).standard_normal(shape).astype(session.input_dtype)
    prepared = session.prepare(x)
    call = session.call
    point = measure(lambda: call(prepared), int(req["batch"]), window_s=float(req["window_s"]),
                    stability_pct=float(req["stability_pct"]), max_seconds=float(req["max_seconds"]))
    # ru_maxrss is in KiB on Linux: the whole process's peak, runtime and model included
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ok": True, "point": point.as_dict(), "runtime": session.runtime, "peak_rss_mb": round(peak, 1)}


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m zoo.bench.worker REQUEST.json", file=sys.stderr)
        return 2
    result = run(json.loads(Path(argv[0]).read_text()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from zoo.fast_exit import run_and_exit

    run_and_exit(lambda: main(sys.argv[1:]))  # the result is printed: skip the runtime's teardown
