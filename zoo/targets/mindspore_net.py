"""A MindSpore ResNeXt built from the registry's ``Arch`` spec, named like timm's ResNet.

The cells carry timm's attribute names (``conv1``, ``bn1``, ``layer1.0.conv2``, ``downsample.1``,
``fc``), so each canonical (timm state_dict) key maps onto a MindSpore parameter by renaming its last
part only: BN ``weight/bias/running_mean/running_var`` become ``gamma/beta/moving_mean/moving_variance``.
This module imports MindSpore: only the worker process (``zoo.targets.mindir_worker``) imports it,
never a process that may hold Paddle.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, nn, ops
from mindspore.common.initializer import initializer

BN_EPS = 1e-5
EXPANSION = 4
STAGE_PLANES = (64, 128, 256, 512)
# canonical (timm) BN suffix -> MindSpore BatchNorm2d parameter name
BN_RENAME = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}


# Every value is overwritten by the source weights (a missing one fails first), so the nets start at
# zeros: random init of a 800M-parameter variant would cost minutes for nothing.
INIT = "zeros"


def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """A bias-free conv with torch's symmetric padding (MindSpore's "same" pads asymmetrically)."""
    pad = kernel // 2
    return nn.Conv2d(cin, cout, kernel, stride=stride, pad_mode="pad" if pad else "valid", padding=pad,
                     group=groups, has_bias=False, weight_init=INIT)


class InferenceBatchNorm(nn.Cell):
    """BatchNorm with frozen statistics, the parameters named like ``nn.BatchNorm2d``'s.

    ``nn.BatchNorm2d.construct`` checks the input rank in Python; with a dynamic batch after the
    padded max-pool the rank is unknown when exporting, and the check is exported as a ``raise``
    branch that ``mindspore.load`` cannot infer. The primitive alone has no such branch.
    """

    def __init__(self, channels: int, eps: float = BN_EPS) -> None:
        super().__init__()
        self.gamma = Parameter(initializer("ones", [channels], ms.float32), name="gamma")
        self.beta = Parameter(initializer("zeros", [channels], ms.float32), name="beta")
        self.moving_mean = Parameter(initializer("zeros", [channels], ms.float32), name="moving_mean",
                                     requires_grad=False)
        self.moving_variance = Parameter(initializer("ones", [channels], ms.float32), name="moving_variance",
                                         requires_grad=False)
        self.batch_norm = ops.BatchNorm(is_training=False, epsilon=eps)

    def construct(self, x):
        return self.batch_norm(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]


def bn(channels: int) -> InferenceBatchNorm:
    return InferenceBatchNorm(channels)


class Pool2d(nn.Cell):
    """A 2-D pooling through its 3-D primitive on a unit depth axis.

    The 3-D primitives take explicit symmetric padding, ceil_mode and count_include_pad like torch;
    ``nn.MaxPool2d``/``nn.AvgPool2d`` wrap the same primitives but branch on the input rank in
    Python, which a dynamic-batch export turns into graph branches ``mindspore.load`` cannot infer.
    """

    def __init__(self, pool: ops.Primitive) -> None:
        super().__init__()
        self.pool = pool
        self.expand = ops.ExpandDims()
        self.squeeze = ops.Squeeze(2)

    def construct(self, x):
        return self.squeeze(self.pool(self.expand(x, 2)))


def max_pool_3x3_s2() -> Pool2d:
    return Pool2d(ops.MaxPool3D(kernel_size=(1, 3, 3), strides=(1, 2, 2), pad_mode="pad", pad_list=(0, 0, 1, 1, 1, 1)))


def avg_pool_2x2(stride: int) -> Pool2d:
    # ceil_mode + count_include_pad=False: an odd feature map keeps its last row/column, averaged alone
    return Pool2d(ops.AvgPool3D(kernel_size=(1, 2, 2), strides=(1, stride, stride), pad_mode="pad", pad=0,
                                ceil_mode=True, count_include_pad=False))


def shortcut(kind: str, cin: int, cout: int, stride: int) -> nn.SequentialCell:
    """timm's projection: ``conv`` = [1x1/stride conv, BN]; ``avgpool`` = [2x2 avg-pool or identity, 1x1 conv, BN]."""
    if kind == "conv":
        return nn.SequentialCell([conv(cin, cout, 1, stride), bn(cout)])
    if kind == "avgpool":
        pool = avg_pool_2x2(stride) if stride > 1 else nn.Identity()
        return nn.SequentialCell([pool, conv(cin, cout, 1), bn(cout)])
    raise ValueError(f"unknown shortcut '{kind}' (expected conv or avgpool)")


class Bottleneck(nn.Cell):
    """1x1 -> grouped 3x3 (carries the stride) -> 1x1, residual add, ReLU."""

    def __init__(self, cin: int, planes: int, stride: int, cardinality: int, base_width: int,
                 downsample: nn.Cell | None) -> None:
        super().__init__()
        width = planes * base_width // 64 * cardinality
        cout = planes * EXPANSION
        self.conv1, self.bn1 = conv(cin, width, 1), bn(width)
        self.conv2, self.bn2 = conv(width, width, 3, stride, cardinality), bn(width)
        self.conv3, self.bn3 = conv(width, cout, 1), bn(cout)
        self.relu = nn.ReLU()
        # identity when the block keeps its shape; it holds no parameters, so the names stay timm's
        self.downsample = downsample if downsample is not None else nn.Identity()

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def stem(kind: str, stem_width: int) -> Tuple[nn.Cell, int]:
    """``conv1`` of the net and its output channels (``bn1`` follows it in both kinds)."""
    if kind == "plain":
        return nn.Conv2d(3, 64, 7, stride=2, pad_mode="pad", padding=3, has_bias=False, weight_init=INIT), 64
    if kind == "deep":
        # indices match timm's Sequential: 0 conv, 1 BN, 2 ReLU, 3 conv, 4 BN, 5 ReLU, 6 conv
        return nn.SequentialCell([
            conv(3, stem_width, 3, 2), bn(stem_width), nn.ReLU(),
            conv(stem_width, stem_width, 3), bn(stem_width), nn.ReLU(),
            conv(stem_width, 64, 3),
        ]), 64
    raise ValueError(f"unknown stem '{kind}' (expected plain or deep)")


class ResNeXt(nn.Cell):
    """The registry's ResNeXt; ``softmax`` appends a Softmax for sources that publish probabilities."""

    def __init__(self, arch: Mapping[str, Any], softmax: bool = False) -> None:
        super().__init__()
        self.conv1, cin = stem(str(arch["stem"]), int(arch["stem_width"]))
        self.bn1 = bn(cin)
        self.relu = nn.ReLU()
        self.maxpool = max_pool_3x3_s2()
        stages = []
        for s, (blocks, planes) in enumerate(zip(arch["layers"], STAGE_PLANES)):
            stages.append(self._stage(arch, cin, planes, int(blocks), 1 if s == 0 else 2))
            cin = planes * EXPANSION
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Dense(cin, int(arch["num_classes"]), weight_init=INIT, bias_init=INIT)
        self.use_softmax = softmax
        self.softmax = nn.Softmax(axis=-1)

    @staticmethod
    def _stage(arch: Mapping[str, Any], cin: int, planes: int, blocks: int, stride: int) -> nn.SequentialCell:
        cells = []
        for i in range(blocks):
            first = i == 0
            cout = planes * EXPANSION
            projects = first and (stride != 1 or cin != cout)
            down = shortcut(str(arch["shortcut"]), cin, cout, stride) if projects else None
            cells.append(Bottleneck(cin, planes, stride if first else 1, int(arch["cardinality"]),
                                    int(arch["base_width"]), down))
            cin = cout
        return nn.SequentialCell(cells)

    def construct(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.fc(ops.mean(x, (2, 3)))
        return self.softmax(x) if self.use_softmax else x


def canonical_name(param_name: str) -> str:
    """The timm state_dict key of a MindSpore parameter name."""
    head, _, last = param_name.rpartition(".")
    back = {v: k for k, v in BN_RENAME.items()}
    return f"{head}.{back.get(last, last)}"


def expected_shapes(net: nn.Cell, name_of: Callable[[str], str] = canonical_name) -> Dict[str, Tuple[int, ...]]:
    """Canonical key -> shape of every parameter the net holds (``name_of`` maps another net's names, MindCV's)."""
    return {name_of(p.name): tuple(p.shape) for p in net.get_parameters()}


def state_mismatch(net: nn.Cell, state: Mapping[str, np.ndarray], show: int = 5,
                   name_of: Callable[[str], str] = canonical_name) -> List[str]:
    """Human-readable problems (missing, unexpected, mis-shaped keys; the first few of each); [] when it fits."""
    want = expected_shapes(net, name_of)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    misshaped = [f"{k} {tuple(state[k].shape)} (expected {want[k]})"
                 for k in sorted(set(want) & set(state)) if tuple(state[k].shape) != want[k]]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshaped)):
        if items:
            more = f" ... and {len(items) - show} more" if len(items) > show else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:show])}{more}")
    return problems


def load_state(net: nn.Cell, state: Mapping[str, np.ndarray], name_of: Callable[[str], str] = canonical_name) -> int:
    """Copy canonical-named arrays onto the net's parameters; returns how many were set.

    Call :func:`state_mismatch` first: this assumes every key fits.
    """
    params = {name_of(p.name): p for p in net.get_parameters()}
    for key, param in params.items():
        param.set_data(ms.Tensor(np.ascontiguousarray(state[key], dtype=np.float32)))
    return len(params)
