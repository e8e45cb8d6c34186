"""timm: ``timm.create_model(name)`` builds the architecture; safetensors or ``.pth`` checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import torch

from zoo.converters.sources.torch_common import TorchAdapter
from zoo.errors import UserError


class TimmAdapter(TorchAdapter):
    name = "timm"
    checkpoint_suffix = ".safetensors"  # what the timm/ Hub repos serve

    def create(self, variant, weights) -> torch.nn.Module:
        import timm

        if not timm.is_model(weights.model_name):
            raise UserError(f"timm has no model '{weights.model_name}'")
        return timm.create_model(weights.model_name, pretrained=False, num_classes=variant.arch.num_classes)

    def load_checkpoint(self, path: Path) -> Dict[str, torch.Tensor]:
        if Path(path).suffix == ".safetensors" or _is_safetensors(path):
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                return load_file(str(path), device="cpu")
            except (SafetensorError, OSError, ValueError) as e:  # truncated, a broken header, wrong dtypes
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise UserError(f"refusing to load {path}: not a readable safetensors file ({first[:200]})") from None
        return super().load_checkpoint(path)

    def save_checkpoint(self, model: Any, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length followed by a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{"
