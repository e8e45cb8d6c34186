"""Parameter and MAC counts of a ResNeXt architecture spec, computed from the spec alone.

This is what the registry's published figures are checked against (``zoo lookup`` prints both).
Convention: MACs count the multiply-accumulates of convolutions and the classifier only; batch
norm, activations, pooling and additions are not counted. The tests check these counts against
torchvision and timm models built by the libraries themselves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from zoo.registry.schema import Arch, ParamsCounted, Stem

MAC_CONVENTION = "conv + classifier multiply-accumulates; BN, ReLU, pooling and adds not counted"


@dataclass(frozen=True)
class ArchStats:
    params: int
    macs: int
    bn_stats: int = 0  # BatchNorm moving means and variances: buffers, not parameters (MindSpore counts them)


def _conv(cin: int, cout: int, k: int, hw_out: int, groups: int = 1) -> tuple[int, int]:
    params = cout * (cin // groups) * k * k
    return params, params * hw_out * hw_out


def arch_stats(arch: Arch, size: int = 224) -> ArchStats:
    """Exact learnable-parameter count and MACs at ``size`` x ``size`` input."""
    params = macs = bn_stats = 0

    def add(p: int, m: int, bn_channels: int = 0) -> None:
        nonlocal params, macs, bn_stats
        params += p + 2 * bn_channels  # BN weight and bias are parameters; running stats are not
        bn_stats += 2 * bn_channels
        macs += m

    hw = size // 2
    if Stem(arch.stem) is Stem.deep:
        sw = arch.stem_width
        add(*_conv(3, sw, 3, hw), bn_channels=sw)
        add(*_conv(sw, sw, 3, hw), bn_channels=sw)
        add(*_conv(sw, 64, 3, hw), bn_channels=64)
    else:
        add(*_conv(3, 64, 7, hw), bn_channels=64)
    hw //= 2  # max pool

    inplanes = 64
    for stage, blocks in enumerate(arch.layers):
        planes = 64 * 2**stage
        width = int(planes * arch.base_width / 64) * arch.cardinality
        for block in range(blocks):
            stride = 2 if (stage > 0 and block == 0) else 1
            hw_out = hw // stride
            add(*_conv(inplanes, width, 1, hw), bn_channels=width)
            add(*_conv(width, width, 3, hw_out, groups=arch.cardinality), bn_channels=width)
            add(*_conv(width, planes * 4, 1, hw_out), bn_channels=planes * 4)
            if block == 0:
                # With avg-pool shortcuts the pooling happens first, so the 1x1 conv runs on hw_out.
                add(*_conv(inplanes, planes * 4, 1, hw_out), bn_channels=planes * 4)
            inplanes = planes * 4
            hw = hw_out
    fc = inplanes * arch.num_classes
    add(fc + arch.num_classes, fc)
    return ArchStats(params=params, macs=macs, bn_stats=bn_stats)


def params_as_counted(arch: Arch, counted: Optional[ParamsCounted]) -> int:
    """The architecture's parameter count under a published figure's convention (None: trainable only)."""
    stats = arch_stats(arch)
    if counted is ParamsCounted.trainable_and_bn_stats:
        return stats.params + stats.bn_stats
    return stats.params
