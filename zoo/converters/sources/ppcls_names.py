"""PaddleClas state-dict names -> the canonical (timm ResNet) names, for targets that rebuild the network.

Three naming schemes map onto one: the plain ResNeXt (``conv``, ``bb_<stage>_<block>.conv<k>``,
``short``, ``out``), the vd variant (``conv1_1..3`` deep stem; the shortcut conv sits behind an
average pool, which timm numbers ``downsample.1`` / ``.2``), and WSL (``_conv_stem``,
``_conv<stage>_<block>._conv<k>``, ``_short._conv``, ``_out``). Paddle's Linear stores its weight as
[in, out]; the canonical layout is [out, in].
"""
from __future__ import annotations

import re
from typing import Dict, Tuple

import numpy as np

from zoo.errors import UserError

_BN = {"weight": "weight", "bias": "bias", "_mean": "running_mean", "_variance": "running_var"}


def _conv_bn_targets(prefix: str, vd: bool) -> Tuple[str, str]:
    """(canonical conv name, canonical BN name) for one PaddleClas conv-bn layer prefix."""
    stem = {"conv": ("conv1", "bn1"), "_conv_stem": ("conv1", "bn1"),
            "conv1_1": ("conv1.0", "conv1.1"), "conv1_2": ("conv1.3", "conv1.4"), "conv1_3": ("conv1.6", "bn1")}
    if prefix in stem:
        return stem[prefix]
    m = re.fullmatch(r"bb_(\d+)_(\d+)\.(conv(\d)|short)", prefix)
    if m:
        block = f"layer{int(m.group(1)) + 1}.{m.group(2)}"
        if m.group(4) is not None:
            k = int(m.group(4)) + 1
            return f"{block}.conv{k}", f"{block}.bn{k}"
        return (f"{block}.downsample.1", f"{block}.downsample.2") if vd else (f"{block}.downsample.0", f"{block}.downsample.1")
    m = re.fullmatch(r"_conv(\d+)_(\d+)\.(_conv(\d)|_short\._conv)", prefix)
    if m:
        block = f"layer{m.group(1)}.{m.group(2)}"
        if m.group(4) is not None:
            k = int(m.group(4)) + 1
            return f"{block}.conv{k}", f"{block}.bn{k}"
        return f"{block}.downsample.0", f"{block}.downsample.1"
    raise UserError(f"PaddleClas layer {prefix} has no canonical name")


def to_canonical(state: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    vd = any(k.startswith("conv1_1.") for k in state)
    out: Dict[str, np.ndarray] = {}
    for key, value in state.items():
        value = np.asarray(value, dtype=np.float32)
        if key in ("out.weight", "_out.weight"):
            out["fc.weight"] = np.ascontiguousarray(value.T)
            continue
        if key in ("out.bias", "_out.bias"):
            out["fc.bias"] = value
            continue
        m = re.fullmatch(r"(.+)\.(_conv\.weight|(?:_batch_norm|_bn)\.(weight|bias|_mean|_variance))", key)
        if not m:
            raise UserError(f"PaddleClas weight {key} has no canonical name")
        conv, bn = _conv_bn_targets(m.group(1), vd)
        out[f"{conv}.weight" if m.group(3) is None else f"{bn}.{_BN[m.group(3)]}"] = value
    return out
