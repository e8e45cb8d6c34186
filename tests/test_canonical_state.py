"""Each source's weights under the canonical (timm ResNet) names drive timm's own model to the same outputs.

This is what a target that rebuilds the network (MindIR) relies on: if a single name or layout in
the mapping were wrong, timm would either refuse the state dict or compute something else.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.converters.sources import get_adapter
from zoo.registry.loader import load_registry
from zoo.registry.query import resolve_variant, select_weights
from zoo.validators.numerics import compare

# (variant, source, timm model with the same architecture)
CASES = [
    ("resnext50_32x4d", "mmcls", "resnext50_32x4d"),
    ("resnext50_32x4d", "ppcls", "resnext50_32x4d"),
    ("resnext50d_32x4d", "ppcls", "resnext50d_32x4d"),
    ("resnext101_32x8d", "ppcls", "resnext101_32x8d"),  # WSL naming
    ("resnext50d_32x4d", "timm", "resnext50d_32x4d"),
]


@pytest.mark.parametrize("variant, source, timm_name", CASES, ids=[f"{c[1]}-{c[0]}" for c in CASES])
def test_canonical_state_reproduces_the_source_model(variant, source, timm_name):
    import timm

    reg = load_registry()
    v = resolve_variant(reg, variant)
    w = select_weights(reg, v, source, None)
    adapter = get_adapter(source)
    model = adapter.fresh(v, w, seed=3)
    state = adapter.canonical_state(model)
    assert all(a.dtype == np.float32 for a in state.values())
    assert not any(k.endswith("num_batches_tracked") for k in state)

    reference = timm.create_model(timm_name, pretrained=False).eval()
    expected = {k for k in reference.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(state) == expected
    reference.load_state_dict({k: torch.from_numpy(a) for k, a in state.items()}, strict=False)

    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224), dtype=np.float32)
    got = adapter.run(model, x)
    with torch.no_grad():
        logits = reference(torch.from_numpy(x))
    want = (torch.softmax(logits, -1) if w.output.value == "probs" else logits).numpy()
    assert compare(want, got, "fp32").passed


def test_unknown_paddle_name_is_a_clear_error():
    from zoo.converters.sources.ppcls_names import to_canonical
    from zoo.errors import UserError

    with pytest.raises(UserError, match="bb_9.extra"):
        to_canonical({"bb_9.extra._conv.weight": np.zeros((1,), np.float32)})
