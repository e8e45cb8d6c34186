"""MindCV: ``mindcv.models.create_model`` builds the network (MindSpore, graph mode, CPU); ``.ckpt`` files.

Reference outputs come from MindCV's own network. The canonical ONNX cannot: MindSpore's ONNX export
fails on it (the residual ``out += identity`` is ``InplaceAddExt``, which the exporter does not
support). The weights go instead onto torchvision's ResNet built with MindCV's layers, groups and
width, which computes the same function with one exception: MindCV's stem max-pool pads "same"
(TF's rule: ``ceil(n / 2)`` outputs, the odd padding row and column after the input, -inf), where
torchvision pads one on every side. :class:`SamePadMaxPool2d` reproduces MindCV's, and the parity
gate against MindCV's own outputs proves the twin.

MindSpore and Paddle clash in one process (oneDNN symbols): like the mindir target, nothing here is
imported by a process that builds a PaddleClas model.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from zoo.converters.sources.base import SourceAdapter, check_fit, shapes_of
from zoo.converters.sources.mindcv_names import to_canonical
from zoo.converters.spec import OnnxSpec
from zoo.errors import UserError
from zoo.registry.schema import Variant, Weights

# What a training checkpoint holds besides the network: optimizer slots, counters, loss scale, and
# MindCV's EMA copy ("ema." + name), which create_model(ema=False), its default, ignores too.
TRAINING_PREFIXES = ("moments.", "accum.", "adam_m.", "adam_v.", "ema.")
TRAINING_KEYS = {"global_step", "learning_rate", "momentum", "scale_sense", "current_iterator_step",
                 "last_overflow_iterator_step", "epoch_num", "step_num"}


def _mindspore() -> Any:
    os.environ.setdefault("GLOG_v", "3")  # MindSpore's C++ warnings would bury the summary
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)  # how MindCV deploys, and PyNative's first call trips over NumPy 2
    return ms


def same_pads(n: int, kernel: int, stride: int) -> Tuple[int, int, int]:
    """MindSpore's pad_mode="same": (output size, padding before, padding after) along one axis."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return out, total // 2, total - total // 2


def _torch_ceil_out(n: int, kernel: int, stride: int, pad: int) -> int:
    """torch's pooled size with ceil_mode (the last window must start inside the input or its left padding)."""
    out = -(-(n + 2 * pad - kernel) // stride) + 1
    return out - 1 if (out - 1) * stride >= n + pad else out


class SamePadMaxPool2d(torch.nn.Module):
    """``mindspore.nn.MaxPool2d(kernel, stride, pad_mode="same")`` on ``n x n`` inputs, as one ONNX MaxPool.

    Symmetric padding is a plain pool. One more row and column after it is ``ceil_mode``: torch's
    windows start at ``-before + stride * i`` as MindSpore's do, and ceil_mode keeps the partial last
    window, provided that gives the same number of windows; otherwise an explicit -inf Pad.
    """

    def __init__(self, kernel: int, stride: int, n: int) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        out, self.before, self.after = same_pads(n, kernel, stride)
        self.ceil = self.before != self.after and _torch_ceil_out(n, kernel, stride, self.before) == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.before == self.after or self.ceil:
            return F.max_pool2d(x, self.kernel, self.stride, padding=self.before, ceil_mode=self.ceil)
        pads = (self.before, self.after, self.before, self.after)
        return F.max_pool2d(F.pad(x, pads, value=-math.inf), self.kernel, self.stride)


class MindcvAdapter(SourceAdapter):
    name = "mindcv"
    framework = "mindspore"
    checkpoint_suffix = ".ckpt"

    def __init__(self) -> None:
        self._ms = _mindspore()

    @classmethod
    def native_network(cls, framework: str, weights: Weights) -> Optional[Dict[str, str]]:
        if framework != "mindspore":
            return None
        return {"factory": "mindcv.models:create_model", "model": weights.model_name,
                "names": "zoo.converters.sources.mindcv_names:to_canonical", "extra": "mindcv"}

    def seed(self, seed: int) -> None:
        self._ms.set_seed(seed)
        np.random.seed(seed)

    def build(self, variant: Variant, weights: Weights, checkpoint: Optional[Path]) -> Any:
        from mindcv.models import create_model
        from mindcv.models.registry import is_model

        if not is_model(weights.model_name):
            raise UserError(f"MindCV has no model '{weights.model_name}'")
        net = create_model(weights.model_name, num_classes=variant.arch.num_classes, pretrained=False)
        net.set_train(False)
        if checkpoint is not None:
            from zoo.converters.sources.mindspore_ckpt import read_ckpt

            state = {k: v for k, v in read_ckpt(checkpoint).items()
                     if k not in TRAINING_KEYS and not k.startswith(TRAINING_PREFIXES)}
            self._load(net, state, weights.model_name)
        return net

    def _load(self, net: Any, state: Dict[str, np.ndarray], model_name: str) -> None:
        params = net.parameters_dict()
        check_fit(model_name, shapes_of(state), {k: tuple(p.shape) for k, p in params.items()})
        self.update_state_arrays(net, state)

    def save_checkpoint(self, model: Any, path: Path) -> None:
        path = Path(path)
        # save_checkpoint appends ".ckpt" to a name without it; it writes the file owner-read-only
        written = path if path.suffix == ".ckpt" else path.with_name(path.name + ".ckpt")
        self._ms.save_checkpoint(model, str(written))
        written.chmod(0o644)
        if written != path:
            written.replace(path)

    def state_arrays(self, model: Any) -> Dict[str, np.ndarray]:
        return {k: p.asnumpy().copy() for k, p in model.parameters_dict().items()}

    def set_state_arrays(self, model: Any, state: Dict[str, np.ndarray]) -> None:
        self._load(model, state, type(model).__name__)

    def iter_state_arrays(self, model: Any) -> Iterator[Tuple[str, np.ndarray]]:
        for k, p in model.parameters_dict().items():
            yield k, p.asnumpy()

    def update_state_arrays(self, model: Any, arrays: Dict[str, np.ndarray]) -> None:
        params = model.parameters_dict()
        for k, a in arrays.items():
            p = params[k]
            p.set_data(self._ms.Tensor(np.ascontiguousarray(a), dtype=p.dtype))

    def canonical_state(self, model: Any) -> Dict[str, np.ndarray]:
        return {to_canonical(k): a.astype(np.float32, copy=False) for k, a in self.state_arrays(model).items()}

    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        return model(self._ms.Tensor(np.ascontiguousarray(x, dtype=np.float32))).asnumpy()

    def export_onnx(self, model: Any, path: Path, spec: OnnxSpec, size: int) -> None:
        from zoo.converters.sources.torch_common import export_torch_onnx

        export_torch_onnx(torch_twin(model, self.canonical_state(model), size), path, spec, size)


def mindcv_layout(net: Any) -> Dict[str, Any]:
    """Blocks per stage, groups, width per group and classes of a MindCV ResNet, read from the net."""
    from mindcv.models.resnet import Bottleneck, ResNet

    if not isinstance(net, ResNet) or not isinstance(net.layer1[0], Bottleneck):
        raise UserError(f"{type(net).__name__} is not a MindCV bottleneck ResNet; only ResNeXt converts")
    layers: List[int] = [len(getattr(net, f"layer{i}")) for i in range(1, 5)]
    return {"layers": layers, "groups": int(net.groups), "width_per_group": int(net.base_with),
            "num_classes": int(net.classifier.out_channels)}


def torch_twin(net: Any, canonical: Dict[str, np.ndarray], size: int) -> Any:
    """torchvision's ResNet shaped like MindCV's ``net``, holding its weights, with MindCV's stem pool."""
    from torchvision.models.resnet import Bottleneck, ResNet

    lay = mindcv_layout(net)
    with torch.device("meta"):  # every tensor comes from the MindCV weights: skip torch's init
        model = ResNet(Bottleneck, lay["layers"], num_classes=lay["num_classes"], groups=lay["groups"],
                       width_per_group=lay["width_per_group"])
    own = model.state_dict()
    weights = {k: v for k, v in own.items() if not k.endswith("num_batches_tracked")}
    check_fit("torchvision's ResNet twin of the MindCV network", shapes_of(canonical), shapes_of(weights))
    state = {k: torch.from_numpy(np.ascontiguousarray(canonical[k])) for k in weights}
    state.update({k: torch.zeros((), dtype=torch.long) for k in own if k.endswith("num_batches_tracked")})
    model.load_state_dict(state, strict=True, assign=True)
    stem_out = (size + 2 * 3 - 7) // 2 + 1  # MindCV's 7x7 stride-2 stem conv pads 3 on every side
    model.maxpool = SamePadMaxPool2d(3, 2, stem_out)
    return model.eval()
