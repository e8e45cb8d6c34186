"""What the canonical ONNX export is asked for (kept free of heavy imports: a cache hit reads it)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OnnxSpec:
    opset: int = 17
    input_name: str = "input"
    output_name: str = "output"
    dynamic_batch: bool = True
    batch: int = 1  # used when dynamic_batch is false, and as the batch for tracing
    simplify: bool = True
