"""mmcls / mmpretrain: an ``ImageClassifier`` built from the variant's spec by mmpretrain itself.

Checkpoints are ``{state_dict, meta}`` with ``backbone.`` / ``head.fc.`` keys, as OpenMMLab saves them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict

import numpy as np

import torch

from zoo.converters.sources.torch_common import TorchAdapter
from zoo.errors import UserError

DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}


class _Logits(torch.nn.Module):
    """mmpretrain's ``mode='tensor'`` forward: backbone -> neck -> head logits, no data preprocessor."""

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(x, mode="tensor")


class MmclsAdapter(TorchAdapter):
    name = "mmcls"

    def create(self, variant, weights) -> torch.nn.Module:
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import register_all_modules

        register_all_modules(init_default_scope=True)
        a = variant.arch
        depth = DEPTHS.get(tuple(a.layers))
        if depth is None or a.stem.value != "plain" or a.shortcut.value != "conv":
            raise UserError(f"mmpretrain's ResNeXt has no {variant.name} (depths 50/101/152, plain stem only)")
        cfg = dict(
            type="ImageClassifier",
            backbone=dict(type="ResNeXt", depth=depth, num_stages=4, out_indices=(3,), groups=a.cardinality,
                          width_per_group=a.base_width, style="pytorch"),
            neck=dict(type="GlobalAveragePooling"),
            head=dict(type="LinearClsHead", num_classes=a.num_classes, in_channels=2048,
                      loss=dict(type="CrossEntropyLoss", loss_weight=1.0), topk=(1, 5)),
        )
        model = MODELS.build(cfg)
        logging.getLogger("mmengine").setLevel(logging.ERROR)  # init_weights logs every layer
        model.init_weights()
        return model

    def canonical_state(self, model: Any) -> Dict[str, np.ndarray]:
        """mmpretrain's ResNeXt uses torchvision's names under ``backbone.``; the classifier is ``head.fc``."""
        out = {}
        for key, value in super().canonical_state(model).items():
            if key.startswith("backbone."):
                out[key[len("backbone."):]] = value
            elif key.startswith("head.fc."):
                out["fc." + key[len("head.fc."):]] = value
            else:
                raise UserError(f"mmcls weight {key} has no canonical name")
        return out

    def forward_module(self, model: Any) -> torch.nn.Module:
        return _Logits(model).eval()

    def save_checkpoint(self, model: Any, path: Path) -> None:
        # OpenMMLab's layout: weights under "state_dict", provenance under "meta".
        torch.save({"state_dict": model.state_dict(), "meta": {"mmpretrain_version": _mmpretrain_version()}}, str(path))


def _mmpretrain_version() -> str:
    import mmpretrain

    return mmpretrain.__version__
