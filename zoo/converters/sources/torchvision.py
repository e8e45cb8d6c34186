"""torchvision: ``torchvision.models.get_model`` builds the architecture; ``.pth`` state dicts.

The Facebook WSL checkpoints that torch hub publishes (``facebookresearch/WSL-Images``,
``resnext101_32x{8,16,32,48}d_wsl``) are torchvision state dicts too: that repository's hubconf
builds ``torchvision.models.resnet.ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=N)``.
Those entries carry the hub's ``*_wsl`` name and are built the same way from the registry's arch.
"""
from __future__ import annotations

import torch

from zoo.converters.sources.torch_common import TorchAdapter
from zoo.errors import UserError
from zoo.registry.schema import Shortcut, Stem

WSL_SUFFIX = "_wsl"  # torch hub's WSL-Images entry names
# torchvision's ResNet class itself: a site's own ResNeXt shape has no named builder, so build it from the arch
GENERIC_RESNET = "resnet.ResNet"


class TorchvisionAdapter(TorchAdapter):
    name = "torchvision"

    def create(self, variant, weights) -> torch.nn.Module:
        import torchvision.models as tvm

        if weights.model_name.endswith(WSL_SUFFIX) or weights.model_name == GENERIC_RESNET:
            return _wsl_resnext(variant)
        if weights.model_name not in tvm.list_models():
            raise UserError(f"torchvision has no builder '{weights.model_name}'")
        return tvm.get_model(weights.model_name, weights=None, num_classes=variant.arch.num_classes)


def _wsl_resnext(variant) -> torch.nn.Module:
    from torchvision.models.resnet import Bottleneck, ResNet

    arch = variant.arch
    if arch.stem != Stem.plain or arch.shortcut != Shortcut.conv:
        raise UserError(f"{variant.name}: torch hub's WSL models are plain ResNeXt (7x7 stem, conv shortcut)")
    return ResNet(Bottleneck, list(arch.layers), num_classes=arch.num_classes,
                  groups=arch.cardinality, width_per_group=arch.base_width)
