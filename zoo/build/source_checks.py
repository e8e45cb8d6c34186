"""The canonical ONNX against the registry (params, MACs, shapes) and against the source model (parity)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from zoo.build.request import ConvertRequest
from zoo.converters.stages import release_memory
from zoo.registry.arch_stats import MAC_CONVENTION, arch_stats, params_as_counted
from zoo.registry.query import effective_input
from zoo.registry.schema import Arch, Weights
from zoo.targets.base import run_static


def fp32_bytes(req: ConvertRequest) -> int:
    """The variant's weights in fp32, from the registry's size field."""
    from zoo.registry.loader import size_of

    return (req.variant.size or size_of(req.variant.arch)).fp32_bytes


def is_large(req: ConvertRequest) -> bool:
    """Weights over protobuf's 2 GiB limit in fp32: the external-data path (the WSL 32x48d)."""
    from zoo.converters.onnx_canonical import PROTOBUF_LIMIT

    return fp32_bytes(req) >= PROTOBUF_LIMIT


def run_source(adapter: Any, model: Any, x, batch: Optional[int]):
    """The source framework's forward pass over ``x``, in chunks of ``batch`` where one is given."""
    import numpy as np

    if batch is None:
        return adapter.run(model, x)
    return np.concatenate([adapter.run(model, x[i:i + batch]) for i in range(0, len(x), batch)])


def check_canonical(req: ConvertRequest, onnx_path: Path, references: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Structure and parity of the canonical ONNX against the registry and the source model.

    Returns the checks and the canonical model's outputs on each parity set (the reference the
    target artifact is compared with)."""
    import onnx
    import onnxruntime as ort

    from zoo import ort_session
    from zoo.converters import onnx_canonical
    from zoo.validators.numerics import compare
    from zoo.validators.structure import analyse, check_shapes

    v, w = req.variant, req.weights
    size = effective_input(v, w).size
    expected = arch_stats(v.arch, size)
    s = analyse(onnx.load(str(onnx_path), load_external_data=False))
    checks: Dict[str, Any] = {}
    checks["params"] = {"graph": s.params, "architecture": expected.params, "passed": s.params == expected.params,
                        "published": _published_params(v.arch, w, s.params)}
    checks["macs"] = {"graph": s.macs, "architecture": expected.macs, "passed": s.macs == expected.macs,
                      "convention": MAC_CONVENTION, "published": _published_macs(w, s.macs)}
    problems = check_shapes(s, size, v.arch.num_classes, None if req.spec.dynamic_batch else req.spec.batch)
    checks["shapes"] = {"input": [s.input_name, s.input_shape], "output": [s.output_name, s.output_shape],
                        "problems": problems, "passed": not problems}
    # The full optimisation level's NCHWc layout pass copies every weight: on a 3 GiB model it lifts
    # the session's peak from 1.4x to 2.7x the weight bytes (measured). Basic still folds.
    sess = ort_session.session(onnx_path, basic=onnx_path.with_name(onnx_canonical.external_data_name(onnx_path)).exists())
    parity, outputs = {}, {}
    batch = None if req.spec.dynamic_batch else req.spec.batch
    if batch is None and is_large(req):
        batch = 1
    for name, (x, ref) in references.items():
        # a static-batch model gets chunks of its batch, the last one padded
        outputs[name] = run_static(lambda chunk, run=sess.run: run(None, {s.input_name: chunk})[0], x, batch)
        parity[name] = compare(ref, outputs[name], "fp32").as_dict()
    del sess
    release_memory(fp32_bytes(req))
    checks["parity"] = {"runtime": f"onnxruntime {ort.__version__} CPU", "precision": "fp32", "batch": batch, "sets": parity,
                        "passed": all(p["passed"] for p in parity.values())}
    checks["accuracy"] = {"skipped": "weights=random" if req.weights_mode == "random" else "no dataset given"}
    checks["passed"] = all(checks[k]["passed"] for k in ("params", "macs", "shapes", "parity"))
    return checks, outputs


def _published_params(arch: Arch, w: Weights, measured: int) -> List[Dict[str, Any]]:
    """Each published params figure against the graph's count, under the figure's own counting convention
    (MindSpore counts the BN moving statistics too: the graph's count plus those is what it compares with)."""
    out = []
    for p in w.published:
        value = p.params if p.params is not None else (p.params_m * 1e6 if p.params_m is not None else None)
        if value is None:
            continue
        as_counted = measured + params_as_counted(arch, p.params_counted) - params_as_counted(arch, None)
        out.append({"value": value, "relative_diff": round((as_counted - value) / value, 5),
                    "counted": p.params_counted.value if p.params_counted else "trainable",
                    "doc": p.provenance.doc, "table": p.provenance.table, "disputed": list(p.disputed)})
    return out


def _published_macs(w: Weights, measured: int) -> List[Dict[str, Any]]:
    out = []
    for p in w.published:
        for field_name, convention in (("macs_g", "MACs"), ("flops_g", "FLOPs as published")):
            value = getattr(p, field_name)
            if value is not None:
                out.append({"value_g": value, "convention": convention,
                            "relative_diff": round((measured / 1e9 - value) / value, 4),
                            "doc": p.provenance.doc, "table": p.provenance.table})
    return out
