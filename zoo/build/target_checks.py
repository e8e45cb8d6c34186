"""The target's artifact against the canonical ONNX (where it runs here) and the target's own kit checks."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np

from zoo.converters.stages import StageMeter
from zoo.targets.base import Built, Runner, Target, TargetJob, split_sets, stack_sets


def run_all(runner: Runner, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Every parity set through ``runner`` in one call where their shapes allow: a runtime that starts a
    process per call (MindSpore's worker) starts one, not one per set."""
    stacked = stack_sets(inputs)
    if stacked is None:
        return {name: runner(x) for name, x in inputs.items()}
    return split_sets(runner(stacked), inputs)


def check_target(target: Target, job: TargetJob, built: Built, references: Dict[str, Any],
                 canonical_out: Dict[str, Any], timer: StageMeter) -> Dict[str, Any]:
    """Parity of a runnable artifact on every parity set, gated per precision, and every kit check."""
    from zoo.validators.numerics import compare, gated, set_passes

    result: Dict[str, Any] = {"checks": [c.as_dict() for c in built.checks]}
    runner = None
    if "parity_skipped" not in built.info and built.outputs is None:
        with timer("target-load"):
            runner = target.load(job, built)
    if runner is None and built.outputs is None:
        result["parity"] = {"skipped": built.info.get("parity_skipped", f"no {target.name} runtime here")}
        parity_ok = True
    else:
        sets = {}
        with timer("target-parity"):
            # the compiler's process ran the files it wrote on the parity sets, or the runtime runs them now
            outputs = built.outputs if built.outputs is not None else \
                run_all(runner, {name: x for name, (x, _) in references.items()})
            for name in references:
                sets[name] = compare(canonical_out[name], outputs[name], job.precision, job.weights.output.value).as_dict()
                sets[name]["gated"] = gated(job.precision, name)
        result["parity"] = {"against": "canonical ONNX on ONNX Runtime", "precision": job.precision, "sets": sets}
        parity_ok = all(set_passes(job.precision, n, p) for n, p in sets.items())
        del runner
    result["passed"] = parity_ok and all(c.passed for c in built.checks)
    return result
