"""What the three torch-based sources (torchvision, timm, mmcls) share: safe loading and export."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

from zoo.converters.spec import OnnxSpec
from zoo.converters.sources.base import SourceAdapter, check_fit, shapes_of
from zoo.errors import UserError


def load_torch_checkpoint(path: Path) -> Dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    try:
        try:  # memory-mapped: the weights are paged in from the file, not copied (3 GiB WSL models)
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(str(path), map_location="cpu", weights_only=True)  # a pre-zip (legacy) file
    except Exception as e:  # unpickling refused, or not a torch file at all
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"refusing to load {path}: not a plain torch checkpoint ({first[:200]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # mmcls / training checkpoints wrap the weights
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} is not a state dict of tensors")
    return obj


def load_state(model: torch.nn.Module, state: Dict[str, torch.Tensor], model_name: str) -> None:
    """Check keys and shapes first, so a wrong checkpoint is one clear line, then load strictly."""
    own = model.state_dict()
    check_fit(model_name, shapes_of(state), shapes_of(own))
    # Same dtypes: adopt the checkpoint's tensors instead of copying them (one copy of the weights in
    # memory, not two); otherwise copy, which casts (a float16 checkpoint into a float32 model).
    same = all(state[k].dtype == v.dtype for k, v in own.items())
    model.load_state_dict(state, strict=True, assign=same)


def export_torch_onnx(module: torch.nn.Module, path: Path, spec: OnnxSpec, size: int) -> None:
    """The raw ONNX of a torch module mapping ``[N, 3, size, size]`` images to the registry's output."""
    x = torch.zeros(spec.batch, 3, size, size)
    axes = {spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}} if spec.dynamic_batch else None
    with torch.no_grad():
        torch.onnx.export(
            module, (x,), str(path), dynamo=False, opset_version=spec.opset,
            input_names=[spec.input_name], output_names=[spec.output_name], dynamic_axes=axes,
            do_constant_folding=True,
        )


class TorchAdapter(SourceAdapter):
    framework = "torch"
    checkpoint_suffix = ".pth"

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def state_arrays(self, model: Any) -> Dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    def iter_state_arrays(self, model: Any) -> Iterator[Tuple[str, np.ndarray]]:
        for k, v in model.state_dict().items():
            yield k, v.detach().cpu().numpy()  # a view of the tensor, not a copy

    def update_state_arrays(self, model: Any, arrays: Dict[str, np.ndarray]) -> None:
        own = model.state_dict()
        with torch.no_grad():
            for k, a in arrays.items():
                own[k].copy_(torch.from_numpy(np.ascontiguousarray(a)))

    def canonical_state(self, model: Any) -> Dict[str, np.ndarray]:
        # torchvision's and timm's ResNet names are the canonical names; BN step counters are not weights
        return {k: v for k, v in self.state_arrays(model).items() if not k.endswith("num_batches_tracked")}

    def load_checkpoint(self, path: Path) -> Dict[str, torch.Tensor]:
        return load_torch_checkpoint(path)

    def save_checkpoint(self, model: Any, path: Path) -> None:
        torch.save(model.state_dict(), str(path))

    def forward_module(self, model: Any) -> torch.nn.Module:
        """The module whose forward maps a normalised image batch to the registry's output."""
        return model

    def export_onnx(self, model: Any, path: Path, spec: OnnxSpec, size: int) -> None:
        export_torch_onnx(self.forward_module(model), path, spec, size)

    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.forward_module(model)(torch.from_numpy(x)).numpy()

    def build(self, variant, weights, checkpoint: Optional[Path]) -> Any:
        if checkpoint is None:
            return self.create(variant, weights).eval()
        state = self.convert_state(self.load_checkpoint(checkpoint))
        model = self._on_meta(variant, weights, state)
        if model is None:  # built for real (its init is then overwritten), and loaded by copy or assignment
            model = self.create(variant, weights)
            load_state(model, state, weights.model_name)
        return model.eval()

    def _on_meta(self, variant, weights, state: Dict[str, torch.Tensor]) -> Optional[torch.nn.Module]:
        """The model built without initialising its weights (on the meta device), then given the
        checkpoint's tensors: the random init a checkpoint overwrites anyway costs 1.3 s on resnext50 and
        grows with the model. None where that cannot hold: a builder that fails on meta, dtypes that need a
        cast, or a tensor the checkpoint does not carry (a non-persistent buffer)."""
        try:
            with torch.device("meta"):
                model = self.create(variant, weights)
        except Exception:  # noqa: BLE001 - a builder that touches real data at init: build it for real
            return None
        own = model.state_dict()
        check_fit(weights.model_name, shapes_of(state), shapes_of(own))
        if any(state[k].dtype != v.dtype for k, v in own.items()):
            return None
        model.load_state_dict(state, strict=True, assign=True)
        if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
            return None
        return model

    def create(self, variant, weights) -> torch.nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def convert_state(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Map the source's checkpoint keys onto the built model's (identity for most sources)."""
        return state
