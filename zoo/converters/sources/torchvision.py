"""torchvision: ``torchvision.models.get_model`` builds the architecture; ``.pth`` state dicts."""
from __future__ import annotations

import torch

from zoo.converters.sources.torch_common import TorchAdapter
from zoo.errors import UserError


class TorchvisionAdapter(TorchAdapter):
    name = "torchvision"

    def create(self, variant, weights) -> torch.nn.Module:
        import torchvision.models as tvm

        if weights.model_name not in tvm.list_models():
            raise UserError(f"torchvision has no builder '{weights.model_name}'")
        return tvm.get_model(weights.model_name, weights=None, num_classes=variant.arch.num_classes)
