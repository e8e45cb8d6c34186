"""Numeric parity between an artifact and the source model, with per-precision gates.

Why these gates: fp32 artifacts compute the same function with other kernels and other summation
orders, so outputs differ by rounding only (observed: ~1e-7 of the output scale for ResNeXt-50).
A wrong weight, a wrong op or wrong padding moves outputs by a large fraction of their scale. The
fp32 gate (cosine >= 0.99999 and max-abs <= 1e-4 of the reference's largest magnitude) leaves two
to three orders of magnitude of headroom over rounding and is still far below any real defect.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Gate:
    min_cosine: float
    max_abs_rel: float | None  # max-abs over max |reference|; None: not gated
    top1_agreement: bool = False  # report only
    # The parity sets the gate applies to (None: all). int8 is calibrated on images, so it is gated
    # on images; standard-normal noise lies outside the calibrated ranges and is reported only.
    sets: Optional[Tuple[str, ...]] = None
    # Probabilities are compared as centred log-probabilities (the logits, up to the per-sample
    # constant softmax removes). int8 keeps the closing softmax in float32, so nothing underflows;
    # on the probabilities themselves softmax amplifies any error between near-tied classes (a
    # random-weight ResNeXt-101 WSL: cosine 0.971 on probabilities, 0.9997 on logits).
    probs_as_logits: bool = False


GATES: Dict[str, Gate] = {
    "fp32": Gate(min_cosine=0.99999, max_abs_rel=1e-4),
    "fp16": Gate(min_cosine=0.999, max_abs_rel=None),
    "int8": Gate(min_cosine=0.99, max_abs_rel=None, top1_agreement=True, sets=("images",), probs_as_logits=True),
}


def gated(precision: str, set_name: str) -> bool:
    """Whether the parity set ``set_name`` counts towards the pass of an artifact in ``precision``."""
    sets = GATES[precision].sets
    return sets is None or set_name in sets


def set_passes(precision: str, set_name: str, result: Dict[str, object]) -> bool:
    return bool(result.get("passed")) or not gated(precision, set_name)


@dataclass(frozen=True)
class Parity:
    max_abs: float
    max_rel: float
    cosine: float
    ref_scale: float
    top1_agreement: float
    passed: bool
    gate: Dict[str, object]
    domain: str = "output"

    def as_dict(self) -> Dict[str, object]:
        return asdict(self)


def centred_log(p: np.ndarray) -> np.ndarray:
    """Probabilities -> log-probabilities centred per sample: the logits up to softmax's constant."""
    lp = np.log(np.maximum(p, np.finfo(np.float32).tiny))
    return lp - lp.mean(axis=1, keepdims=True)


def compare(reference: np.ndarray, candidate: np.ndarray, precision: str = "fp32", output: str = "logits") -> Parity:
    """Per-sample cosine (the worst one counts), max-abs, max-rel and top-1 agreement.

    ``output`` says what the arrays are (``logits`` or ``probs``); see ``Gate.probs_as_logits``."""
    ref = reference.astype(np.float64).reshape(len(reference), -1)
    cand = candidate.astype(np.float64).reshape(len(candidate), -1)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    domain = "output"
    if output == "probs" and GATES[precision].probs_as_logits:
        ref, cand, domain = centred_log(ref), centred_log(cand), "centred log-probabilities"
    diff = np.abs(ref - cand)
    scale = float(np.abs(ref).max())
    denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = np.where(denom > 0, (ref * cand).sum(axis=1) / np.maximum(denom, 1e-300), 1.0)
    gate = GATES[precision]
    max_abs = float(diff.max())
    max_rel = float((diff / np.maximum(np.abs(ref), 1e-6 * max(scale, 1e-30))).max())
    cosine = float(cos.min())
    passed = cosine >= gate.min_cosine and (gate.max_abs_rel is None or max_abs <= gate.max_abs_rel * max(scale, 1e-12))
    agreement = float((ref.argmax(1) == cand.argmax(1)).mean())
    return Parity(max_abs=max_abs, max_rel=max_rel, cosine=cosine, ref_scale=scale, top1_agreement=agreement,
                  passed=bool(passed), gate=asdict(gate), domain=domain)
