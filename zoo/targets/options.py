"""The options every target has (``conf/target/<name>.yaml``), typed. Each target extends them with its
own dataclass, in its own module (``Target.options``); Hydra merges the YAML and every ``target.<key>=``
override onto it, so a wrong type or an unknown key fails before any work. Ranges are checked in the
dataclasses too; choices that need the target's toolchain tables stay in ``Target.check_options``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from zoo.config import bounds
from zoo.errors import UserError

OPSETS = (9, 21)  # what the exporters here write: torch.onnx and paddle2onnx (at most 21)


@dataclass
class ExportOptions:
    """What every target has: the canonical ONNX's export spec and the precisions it builds."""

    name: str = ""
    plugin: str = ""  # the Target class, ``module:Class`` (read by zoo.targets before composition)
    opset: int = 17
    input_name: str = "input"
    output_name: str = "output"
    dynamic_batch: bool = True
    batch: int = 1
    simplify: bool = True
    precisions: List[str] = field(default_factory=list)
    default_precision: str = "fp32"

    def __post_init__(self) -> None:
        from zoo.store import plain_name

        plain_name(self.name, "target")
        bounds.within("target.opset", self.opset, *OPSETS, f"give an ONNX opset from {OPSETS[0]} to {OPSETS[1]}")
        for key in ("input_name", "output_name"):
            value = getattr(self, key)
            if not value or not value.isprintable():
                raise UserError(f"target.{key}={value!r}: give the ONNX graph's {key.split('_')[0]} name "
                                       f"(printable, not empty)")
        bounds.at_least("target.batch", self.batch, 1, "the batch must be a positive integer")
        bounds.one_of("target.default_precision", self.default_precision, self.precisions)
