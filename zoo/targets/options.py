"""Each target's options (``conf/target/<name>.yaml``), typed: Hydra merges the YAML and every
``target.<key>=`` override onto these dataclasses, so a wrong type or an unknown key fails before any
work. The ranges are checked here too; choices that need the target's toolchain tables stay in
``Target.check_options``. Cheap to import: no toolchain is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Type

from zoo.config import bounds
from zoo.errors import UserError

OPSETS = (9, 21)  # what the exporters here write: torch.onnx and paddle2onnx (at most 21)


@dataclass
class ExportOptions:
    """What every target has: the canonical ONNX's export spec and the precisions it builds."""

    name: str = ""
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


@dataclass
class Fp16Options:
    keep_io_types: bool = True


@dataclass
class OrtInt8Options:
    calib_images: int = 32
    calibrate_method: str = "MinMax"
    per_channel: bool = True
    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    activation_symmetric: bool = False
    weight_symmetric: bool = True

    def __post_init__(self) -> None:
        bounds.at_least("target.int8.calib_images", self.calib_images, 1, "give at least 1 calibration image")


@dataclass
class OnnxOptions(ExportOptions):
    fp16: Fp16Options = field(default_factory=Fp16Options)
    int8: OrtInt8Options = field(default_factory=OrtInt8Options)


@dataclass
class NncfInt8Options:
    calib_images: int = 32

    def __post_init__(self) -> None:
        bounds.at_least("target.int8.calib_images", self.calib_images, 1, "give at least 1 calibration image")


@dataclass
class OpenVinoOptions(ExportOptions):
    int8: NncfInt8Options = field(default_factory=NncfInt8Options)


@dataclass
class MindirOptions(ExportOptions):
    worker_timeout_s: Optional[float] = 1800.0  # null: no limit

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.worker_timeout_s", self.worker_timeout_s, "give seconds (> 0), or null for no limit")


@dataclass
class IxrtQuantOptions:
    seed: int = 42
    calib_images: int = 96
    disable_quant_list: List[str] = field(default_factory=list)
    method: str = "Entropy"
    check_images: int = 8
    min_cosine: float = 0.99

    def __post_init__(self) -> None:
        for key in ("calib_images", "check_images"):
            bounds.at_least(f"target.quant.{key}", getattr(self, key), 1, "must be a positive integer")
        if not -1 <= self.min_cosine <= 1:
            raise UserError(f"target.quant.min_cosine={self.min_cosine}: give a cosine from -1 to 1")


@dataclass
class IxrtOptions(ExportOptions):
    quant: IxrtQuantOptions = field(default_factory=IxrtQuantOptions)
    workspace_gib: float = 4.0
    build_timeout_s: float = 3600.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.workspace_gib", self.workspace_gib, "must be a positive number of GiB")
        bounds.above("target.build_timeout_s", self.build_timeout_s, "give seconds (> 0)")


@dataclass
class VaccOptions(ExportOptions):
    schema: str = "current"
    cluster_mode: int = 0
    calibrate_mode: str = "max"
    quantize_per_channel: bool = True
    calib_images: int = 50
    runtime_batch: int = 1
    compile_timeout_s: float = 7200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.at_least("target.calib_images", self.calib_images, 1, "give at least 1 calibration image")
        bounds.at_least("target.runtime_batch", self.runtime_batch, 1, "give a positive batch")
        bounds.above("target.compile_timeout_s", self.compile_timeout_s, "give seconds (> 0)")


@dataclass
class BpuOptions(ExportOptions):
    march: str = "bayes-e"
    input_type_rt: str = "nv12"
    input_layout_rt: str = "NHWC"
    compile_mode: str = "latency"
    optimize_level: str = "O3"
    calib_images: int = 100
    calibration_type: str = "default"
    compile_timeout_s: float = 7200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        bounds.above("target.compile_timeout_s", self.compile_timeout_s, "give seconds (> 0)")


@dataclass
class TensorrtOptions(IxrtOptions):
    """The same keys as ixRT's: a static batch, the symmetric QDQ recipe, the builder's pool and time limit."""


# conf/target/<name>.yaml -> its options; the YAML's defaults list names /_zoo_target/<name>
OPTIONS: Dict[str, Type[ExportOptions]] = {
    "onnx": OnnxOptions, "openvino": OpenVinoOptions, "mindir": MindirOptions,
    "ixrt": IxrtOptions, "vacc": VaccOptions, "bpu": BpuOptions, "tensorrt": TensorrtOptions,
}
