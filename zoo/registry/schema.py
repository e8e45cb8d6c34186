"""Typed schema of the registry.

Every YAML file under ``conf/model/`` is merged onto :class:`Variant`, so a misspelt key, a
wrong type or a missing required field fails at load time with the file and the key named.
Published numbers are never bare: each sits in a :class:`Published` row that says which
document and which table it was copied from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING


class Stem(Enum):
    plain = "plain"  # one 7x7 stride-2 conv (torchvision, mmcls, ppcls plain)
    deep = "deep"  # three 3x3 convs (timm "d", ppcls "vd")


class Shortcut(Enum):
    conv = "conv"  # strided 1x1 conv projection
    avgpool = "avgpool"  # 2x2 avg-pool then 1x1 conv (timm avg_down, ppcls vd)


class Interpolation(Enum):
    bilinear = "bilinear"
    bicubic = "bicubic"


class ColorOrder(Enum):
    RGB = "RGB"
    BGR = "BGR"


class Layout(Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class Output(Enum):
    logits = "logits"
    probs = "probs"


class ParamsCounted(Enum):
    """What a published params figure counts."""

    trainable = "trainable"  # the learnable parameters (torch's parameters()): the architecture's count
    trainable_and_bn_stats = "trainable_and_bn_stats"  # plus BN moving mean and variance (MindSpore Parameters)


@dataclass
class Arch:
    """What the network is, independent of who trained it."""

    layers: List[int] = MISSING  # bottleneck blocks per stage
    cardinality: int = MISSING  # groups of the 3x3 conv
    base_width: int = MISSING  # width per group at the first stage
    stem: Stem = Stem.plain
    stem_width: int = 32  # channels of the deep stem's first two convs (timm "d", ppcls "vd")
    shortcut: Shortcut = Shortcut.conv
    num_classes: int = 1000


@dataclass
class InputSpec:
    """Evaluation preprocessing. ``resize`` is the short side; timm states ``crop_pct`` instead."""

    size: int = 224
    resize: Optional[int] = None
    crop_pct: Optional[float] = None
    interpolation: Interpolation = Interpolation.bilinear
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    color: ColorOrder = ColorOrder.RGB
    layout: Layout = Layout.NCHW

    def __post_init__(self) -> None:
        from zoo.errors import UserError

        # a ResNeXt downsamples by 32: a smaller input has no spatial extent left
        if not 32 <= self.size <= 4096:
            raise UserError(f"model.input.size={self.size}: give the input side in pixels, from 32 to 4096")
        if self.resize is not None and not self.size <= self.resize <= 8192:
            raise UserError(f"model.input.resize={self.resize}: give the short side before the crop, "
                            f"at least model.input.size ({self.size})")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise UserError(f"model.input.crop_pct={self.crop_pct}: give a fraction in (0, 1]")
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise UserError("model.input.mean / std: give three numbers each (one per channel), std above 0")

    def resize_short(self) -> int:
        """Short side before the centre crop (timm's rule: floor(size / crop_pct))."""
        if self.resize is not None:
            return self.resize
        if self.crop_pct is not None:
            return int(math.floor(self.size / self.crop_pct))
        return self.size


@dataclass
class Provenance:
    """Where a number was copied from: a document id from ``conf/documents.yaml`` and its table."""

    doc: str = MISSING
    table: str = MISSING
    row: str = MISSING


@dataclass
class Published:
    """One row of a published table, transcribed exactly. Units are in the field names."""

    provenance: Provenance = MISSING
    top1: Optional[float] = None
    top5: Optional[float] = None
    params_m: Optional[float] = None
    params: Optional[int] = None  # an exact count, where the source gives one
    params_counted: Optional[ParamsCounted] = None  # the convention of params / params_m; None: trainable
    macs_g: Optional[float] = None  # multiply-accumulates
    flops_g: Optional[float] = None  # the source calls them FLOPs; convention as published
    input_size: Optional[int] = None
    file_size_mb: Optional[float] = None
    note: Optional[str] = None
    # Where the source disagrees with itself or with the architecture: keep the number, say why.
    # Each entry starts with the field it disputes ("params_m: ...").
    disputed: List[str] = field(default_factory=list)


@dataclass
class Weights:
    """One published checkpoint: a row of ``zoo list``."""

    source: str = MISSING  # a file in conf/source/
    tag: str = MISSING  # the source's own weight tag
    model_name: str = MISSING  # the source's own builder / model name
    license: str = MISSING
    output: Output = Output.logits
    url: Optional[str] = None
    hf_hub_id: Optional[str] = None
    filename: Optional[str] = None  # file inside the hub repo
    sha256: Optional[str] = None  # the full digest, where published
    sha256_prefix: Optional[str] = None  # the digest prefix torchvision / mmcls put in file names
    default: bool = False  # the tag used when none is asked for
    input: Optional[InputSpec] = None  # overrides the variant's input spec
    published: List[Published] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    # Older names of this one checkpoint (timm's deprecated `tv_`, `gluon_`, `ssl_`, `swsl_`, `ig_` models):
    # each resolves to this (variant, source, tag), not merely to the variant.
    aliases: List[str] = field(default_factory=list)


@dataclass
class Deployment:
    """A vendor's published result for this variant on its hardware."""

    target: str = MISSING
    device: Optional[str] = None
    sdk: Optional[str] = None
    precision: str = MISSING
    batch: Optional[int] = None
    fps: Optional[float] = None
    fps_note: Optional[str] = None  # how the vendor measured throughput
    latency_ms: Optional[float] = None
    top1: Optional[float] = None
    top5: Optional[float] = None
    params_m: Optional[float] = None
    weights_source: Optional[str] = None
    weights_tag: Optional[str] = None
    provenance: Provenance = MISSING
    notes: List[str] = field(default_factory=list)


@dataclass
class Size:
    """How big a variant is, for schedulers deciding what fits in memory before loading anything.

    Derived by the loader from ``arch`` (a variant file may not set it), so it cannot drift from
    the architecture: a figure written by hand would go stale the day the arch is corrected.
    """

    params: int = 0  # learnable parameters, as zoo.registry.arch_stats counts them
    fp32_bytes: int = 0  # the weights at 4 bytes each: what a float32 checkpoint or ONNX holds


@dataclass
class Variant:
    """One ResNeXt architecture and every checkpoint and result published for it."""

    name: str = MISSING
    aliases: List[str] = field(default_factory=list)
    description: str = ""
    arch: Arch = MISSING
    input: InputSpec = field(default_factory=InputSpec)
    weights: List[Weights] = MISSING
    deployments: List[Deployment] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    size: Optional[Size] = None  # derived from arch at load time (see Size); never set in a variant file


@dataclass
class Document:
    """A published document that registry numbers are transcribed from."""

    title: str = MISSING
    publisher: str = MISSING
    seed: Optional[str] = None  # file name under the project's seeds, where it came from there
    url: Optional[str] = None
    version: Optional[str] = None


@dataclass
class Source:
    """A model zoo that publishes weights: conf/source/<name>.yaml."""

    name: str = MISSING
    title: str = MISSING
    library: str = MISSING  # the Python package that builds its models
    homepage: str = MISSING
    checkpoint_format: str = MISSING
    # Set for a zoo whose checkpoints are listed for their published figures only (no converter): why,
    # and what to run instead. ``convert`` answers with it.
    reference_only: Optional[str] = None
    # The converter (``module:Class``, a SourceAdapter), None for a reference-only zoo; the packages whose
    # versions identify an artifact built from it (read from metadata, without importing them); the
    # pyproject extra that installs them; and its rank when a convert names no source (lowest first).
    adapter: Optional[str] = None
    tools: List[str] = field(default_factory=list)
    extra: Optional[str] = None
    preference: int = 100
