"""PaddleClas's ResNeXt families, re-implemented so the ``paddleclas`` wheel is not a dependency.

PaddleClas 2.6.0 cannot be installed beside the zoo (it pins numpy==1.24.4 and opencv<=4.6), but its
published ``.pdparams`` checkpoints are what the ppcls source serves. These layers are written
independently and compactly, yet reproduce PaddleClas's models exactly where it matters:

* the structured state-dict keys (``bb_0_0.conv0._conv.weight``, ``_conv1_0._short._conv._bn._mean``),
  their order and shapes, so ``set_state_dict(paddle.load(ckpt))`` takes a published checkpoint as is;
* the Paddle parameter names (``res2a_branch2a_weights``, ``layer1.0.downsample.1.running_var``), which
  come from ``ParamAttr(name=...)`` and are what ``paddle.jit.save`` writes into inference models;
* the sublayer tree and the order parameters are created in, so the same ``paddle.seed`` gives the
  same fresh initialisation as PaddleClas;
* the forward pass: the same ops, paddings, ``ceil_mode``, activation placement and flattening.

Three families (PaddleClas's own model names):

* ``ResNeXt{50,101,152}_{32,64}x4d`` (``ppcls/arch/backbone/model_zoo/resnext.py``): 7x7 stem;
* ``ResNeXt{50,101,152}_vd_{32,64}x4d`` (``resnext_vd.py``): three 3x3 stem convs, and a 2x2/2
  average pool (``ceil_mode=True``) before the 1x1 projection shortcut of every stage but the first;
* ``ResNeXt101_32x{8,16,32,48}d_wsl`` (``resnext101_wsl.py``): torchvision-style names, the
  Instagram weakly-supervised weights.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable, Dict, Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F
from paddle import ParamAttr, nn
from paddle.nn.initializer import Uniform

from zoo.errors import UserError

STAGE_DEPTHS: Dict[int, Tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

# BatchNorm parameter / statistic suffixes of the two naming schemes: (scale, shift, mean, variance)
_PPCLS_BN = ("_scale", "_offset", "_mean", "_variance")
_TORCH_BN = (".weight", ".bias", ".running_mean", ".running_var")


class ConvBN(nn.Layer):
    """Conv2D without bias, then PaddleClas's fused ``nn.BatchNorm`` (activation applied inside it).

    ``conv_param`` names the conv weight; ``bn_param`` + ``bn_suffixes`` name the four BN tensors;
    ``bn_attr`` is the attribute the BN sits under (``_batch_norm`` or ``_bn``). ``avg_pool`` is
    None for layers without a pool sublayer, else whether the registered 2x2 ``_pool2d_avg`` runs
    first (the vd files give every conv-bn that sublayer and use it only on the shortcut).
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        *,
        conv_param: str,
        bn_param: str,
        bn_suffixes: Sequence[str],
        bn_attr: str,
        stride: int = 1,
        groups: int = 1,
        act: Optional[str] = None,
        avg_pool: Optional[bool] = None,
    ):
        super().__init__()
        self.pool_first = bool(avg_pool)
        if avg_pool is not None:
            self._pool2d_avg = nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True)
        self._conv = nn.Conv2D(
            cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
            weight_attr=ParamAttr(name=conv_param), bias_attr=False,
        )
        scale, shift, mean, var = (bn_param + s for s in bn_suffixes)
        self.bn_attr = bn_attr
        setattr(self, bn_attr, nn.BatchNorm(
            cout, act=act, param_attr=ParamAttr(name=scale), bias_attr=ParamAttr(name=shift),
            moving_mean_name=mean, moving_variance_name=var,
        ))

    def forward(self, x):
        if self.pool_first:
            x = self._pool2d_avg(x)
        return getattr(self, self.bn_attr)(self._conv(x))


def _ppcls_conv_bn(cin, cout, kernel, name, vd, **kw) -> ConvBN:
    """A conv-bn named the PaddleClas way: ``<name>_weights``, and ``"bn" + name[3:]`` for the BN
    (res2a_branch2a -> bn2a_branch2a, res_conv1 -> bn_conv1, conv1_1 -> bnv1_1). PaddleClas special-cases
    a layer named exactly ``conv1``, which none of these models has."""
    return ConvBN(
        cin, cout, kernel, conv_param=name + "_weights", bn_param="bn" + name[3:],
        bn_suffixes=_PPCLS_BN, bn_attr="_batch_norm",
        avg_pool=kw.pop("avg_pool", False) if vd else None, **kw,
    )


class Bottleneck(nn.Layer):
    """1x1 -> grouped 3x3 (stride here) -> 1x1, plus identity or a 1x1 projection; ReLU after the add."""

    def __init__(self, cin, width, cout, stride, cardinality, name, project, vd, pool_shortcut):
        super().__init__()
        mk = partial(_ppcls_conv_bn, vd=vd)
        self.conv0 = mk(cin, width, 1, name + "_branch2a", act="relu")
        self.conv1 = mk(width, width, 3, name + "_branch2b", stride=stride, groups=cardinality, act="relu")
        self.conv2 = mk(width, cout, 1, name + "_branch2c")
        self.shortcut = not project
        if project:
            if vd:  # the vd trick: average-pool to the new resolution, then a stride-1 projection
                self.short = mk(cin, cout, 1, name + "_branch1", avg_pool=pool_shortcut)
            else:
                self.short = mk(cin, cout, 1, name + "_branch1", stride=stride)

    def forward(self, x):
        y = self.conv2(self.conv1(self.conv0(x)))
        short = x if self.shortcut else self.short(x)
        return F.relu(paddle.add(x=short, y=y))


def _block_name(depth: int, stage: int, index: int) -> str:
    """Caffe-style block names: res2a, res2b, ...; the long stage of 101/152 counts res4a, res4b1, ..."""
    if depth > 50 and stage == 2:
        return "res4a" if index == 0 else f"res4b{index}"
    return f"res{stage + 2}{chr(ord('a') + index)}"


class ResNeXt(nn.Layer):
    """PaddleClas's ``ResNeXt`` (``vd=False``) and ``ResNeXt_vd`` (``vd=True``), bottleneck width 4 per group."""

    def __init__(self, depth: int = 50, cardinality: int = 32, vd: bool = False, num_classes: int = 1000):
        super().__init__()
        if depth not in STAGE_DEPTHS or cardinality not in (32, 64):
            raise UserError(f"PaddleClas ResNeXt has depth 50/101/152 and cardinality 32/64, not {depth}/{cardinality}")
        self.depth, self.cardinality, self.vd = depth, cardinality, vd
        if vd:  # deep stem: 3x3/2 3->32, 3x3 32->32, 3x3 32->64
            for i, (cin, cout, stride) in enumerate(((3, 32, 2), (32, 32, 1), (32, 64, 1)), start=1):
                setattr(self, f"conv1_{i}", _ppcls_conv_bn(cin, cout, 3, f"conv1_{i}", True, stride=stride, act="relu"))
            self.stem = [getattr(self, f"conv1_{i}") for i in (1, 2, 3)]
        else:
            self.conv = _ppcls_conv_bn(3, 64, 7, "res_conv1", False, stride=2, act="relu")
            self.stem = [self.conv]
        self.pool2d_max = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)

        self.blocks = []  # a plain list, as in PaddleClas: the blocks register as bb_<stage>_<index>
        cin = 64
        for stage, n in enumerate(STAGE_DEPTHS[depth]):
            width, cout = cardinality * 4 * 2**stage, 256 * 2**stage
            for i in range(n):
                first = i == 0
                block = Bottleneck(
                    cin, width, cout, stride=2 if first and stage > 0 else 1, cardinality=cardinality,
                    name=_block_name(depth, stage, i), project=first, vd=vd, pool_shortcut=stage > 0,
                )
                self.blocks.append(self.add_sublayer(f"bb_{stage}_{i}", block))
                cin = cout
        self.pool2d_avg = nn.AdaptiveAvgPool2D(1)
        self.features = cin
        bound = 1.0 / math.sqrt(cin)
        self.out = nn.Linear(
            cin, num_classes,
            weight_attr=ParamAttr(name="fc_weights", initializer=Uniform(-bound, bound)),
            bias_attr=ParamAttr(name="fc_offset"),
        )

    def forward(self, x):
        if self.vd:
            return self._forward(x)
        with paddle.static.amp.fp16_guard():  # the plain file scopes its graph for pure-fp16 training
            return self._forward(x)

    def _forward(self, x):
        for layer in self.stem:
            x = layer(x)
        x = self.pool2d_max(x)
        for block in self.blocks:
            x = block(x)
        x = paddle.reshape(self.pool2d_avg(x), shape=[-1, self.features])
        return self.out(x)


def _torch_conv_bn(cin, cout, kernel, conv_name, bn_name, **kw) -> ConvBN:
    return ConvBN(cin, cout, kernel, conv_param=conv_name + ".weight", bn_param=bn_name,
                  bn_suffixes=_TORCH_BN, bn_attr="_bn", **kw)


class WSLShortcut(nn.Layer):
    """Identity, or ``downsample.0`` conv + ``downsample.1`` BN when channels or stride change."""

    def __init__(self, cin, cout, stride, prefix):
        super().__init__()
        self.project = cin != cout or stride != 1
        if self.project:
            self._conv = _torch_conv_bn(cin, cout, 1, f"{prefix}.downsample.0", f"{prefix}.downsample.1", stride=stride)

    def forward(self, x):
        return self._conv(x) if self.project else x


class WSLBottleneck(nn.Layer):
    def __init__(self, cin, width, cout, stride, cardinality, prefix):
        super().__init__()
        convs = ((cin, width, 1, 1, 1, "relu"), (width, width, 3, stride, cardinality, "relu"), (width, cout, 1, 1, 1, None))
        for k, (a, b, kernel, s, g, act) in enumerate(convs):
            setattr(self, f"_conv{k}", _torch_conv_bn(
                a, b, kernel, f"{prefix}.conv{k + 1}", f"{prefix}.bn{k + 1}", stride=s, groups=g, act=act))
        self._short = WSLShortcut(cin, cout, stride, prefix)

    def forward(self, x):
        y = self._conv2(self._conv1(self._conv0(x)))
        return F.relu(paddle.add(y, self._short(x)))


class ResNeXt101WSL(nn.Layer):
    """PaddleClas's ``ResNeXt101WSL``: ResNeXt-101 32xWd with torchvision parameter names."""

    def __init__(self, width: int = 48, cardinality: int = 32, num_classes: int = 1000):
        super().__init__()
        if width % 8:
            raise UserError(f"ResNeXt101 WSL width must be a multiple of 8, not {width}")
        self._conv_stem = _torch_conv_bn(3, 64, 7, "conv1", "bn1", stride=2, act="relu")
        self._pool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self.blocks = []
        cin = 64
        for stage, n in enumerate(STAGE_DEPTHS[101]):
            bottleneck, cout = cardinality * width * 2**stage, 256 * 2**stage
            for i in range(n):
                stride = 2 if i == 0 and stage > 0 else 1
                block = WSLBottleneck(cin, bottleneck, cout, stride, cardinality, f"layer{stage + 1}.{i}")
                self.blocks.append(self.add_sublayer(f"_conv{stage + 1}_{i}", block))
                cin = cout
        self._avg_pool = nn.AdaptiveAvgPool2D(1)
        self._out = nn.Linear(cin, num_classes, weight_attr=ParamAttr(name="fc.weight"),
                              bias_attr=ParamAttr(name="fc.bias"))

    def forward(self, x):
        x = self._pool(self._conv_stem(x))
        for block in self.blocks:
            x = block(x)
        return self._out(paddle.squeeze(self._avg_pool(x), axis=[2, 3]))


def _model_table() -> Dict[str, Callable[..., nn.Layer]]:
    table: Dict[str, Callable[..., nn.Layer]] = {}
    for vd in (False, True):
        for depth in STAGE_DEPTHS:
            for cardinality in (32, 64):
                name = f"ResNeXt{depth}{'_vd' if vd else ''}_{cardinality}x4d"
                table[name] = partial(ResNeXt, depth, cardinality, vd)
    for width in (8, 16, 32, 48):
        table[f"ResNeXt101_32x{width}d_wsl"] = partial(ResNeXt101WSL, width, 32)
    return table


_MODELS = _model_table()
PPCLS_MODEL_NAMES: Tuple[str, ...] = tuple(_MODELS)


def build_ppcls_model(model_name: str, num_classes: int = 1000) -> nn.Layer:
    """PaddleClas's model ``model_name`` (its own spelling, e.g. ``ResNeXt101_vd_64x4d``), freshly initialised.

    Paddle refuses a second live parameter with an explicit ``ParamAttr`` name, and PaddleClas names
    every parameter, so each model is built under its own ``unique_name.guard()``: that makes the
    model buildable more than once per process (and beside PaddleClas's own) and its generated layer
    names those of a fresh process. Build it under ``paddle.LazyGuard()`` to get the structure
    without allocating the weights.
    """
    try:
        factory = _MODELS[model_name]
    except KeyError:
        raise UserError(
            f"unknown PaddleClas ResNeXt model '{model_name}'; valid: {', '.join(PPCLS_MODEL_NAMES)}"
        ) from None
    with paddle.utils.unique_name.guard():
        return factory(num_classes=num_classes)
