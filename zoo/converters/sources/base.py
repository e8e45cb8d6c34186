"""The interface every source adapter implements, and the state-dict fit check they share."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple

import numpy as np

from zoo.converters.spec import OnnxSpec
from zoo.errors import UserError
from zoo.registry.schema import Variant, Weights


class SourceAdapter(ABC):
    """Builds a variant with its source's own library, loads the source's checkpoint, exports ONNX."""

    name: str
    framework: str  # the package whose version goes into the manifest and the artifact key
    checkpoint_suffix: str  # the source's own checkpoint format

    @abstractmethod
    def build(self, variant: Variant, weights: Weights, checkpoint: Optional[Path]) -> Any:
        """The source's model in eval mode, with ``checkpoint`` loaded (fresh init when None)."""

    @abstractmethod
    def save_checkpoint(self, model: Any, path: Path) -> None:
        """Write the model's weights in the source's own checkpoint format."""

    @abstractmethod
    def export_onnx(self, model: Any, path: Path, spec: OnnxSpec, size: int) -> None:
        """Raw ONNX export (names and batch as asked; canonicalised afterwards)."""

    @abstractmethod
    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The source framework's own forward pass, with the registry's output semantics."""

    def seed(self, seed: int) -> None:
        """Seed the framework's initialisers so weights=random is reproducible."""

    @abstractmethod
    def state_arrays(self, model: Any) -> Dict[str, np.ndarray]:
        """The model's parameters and buffers as numpy arrays, under the source's own key names."""

    @abstractmethod
    def iter_state_arrays(self, model: Any) -> Iterator[Tuple[str, np.ndarray]]:
        """Like :meth:`state_arrays`, one array at a time (views where the framework allows), so
        a scan of a 3 GiB model never holds a copy of all of it."""

    @abstractmethod
    def update_state_arrays(self, model: Any, arrays: Dict[str, np.ndarray]) -> None:
        """Overwrite some of the model's tensors, by their keys, in place."""

    @classmethod
    def native_network(cls, framework: str, weights: Weights) -> Optional[Dict[str, str]]:
        """The source's own network in ``framework``, for a target that rebuilds the model there:
        ``factory`` (``module:function`` taking the model name and ``num_classes=``), ``model``, ``names``
        (``module:function`` mapping its parameter names to the canonical ones) and the pyproject
        ``extra`` that installs the factory. None: the target builds it from the registry's Arch spec."""
        return None

    def canonical_state(self, model: Any) -> Dict[str, np.ndarray]:
        """The weights under the canonical names (timm's ResNet state-dict names, float32, without
        ``num_batches_tracked``), for targets that rebuild the network in another framework."""
        raise UserError(f"source {self.name} cannot hand its weights to a target that rebuilds the network")

    def fresh(self, variant: Variant, weights: Weights, seed: int) -> Any:
        """Fresh weights for a dry run: the library's own init, then constants made non-trivial.

        Libraries start BN at mean 0 / var 1 / scale 1 / shift 0 and some biases at 0. Exported
        graphs fold or drop such no-ops, which would hide folding errors and drop parameters the
        validators count; real checkpoints never look like that.
        """
        self.seed(seed)
        model = self.build(variant, weights, None)
        constant = {k: a.copy() for k, a in self.iter_state_arrays(model) if _is_constant(a)}
        self.update_state_arrays(model, perturb_constant_tensors(constant, seed))
        return model


def _is_constant(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and a.size > 0 and bool(np.all(a == a.flat[0]))


def perturb_constant_tensors(state: Dict[str, np.ndarray], seed: int) -> Dict[str, np.ndarray]:
    """Replace float tensors that hold one repeated value (0 or 1 from default init) with seeded noise
    around it; positive stays positive (a BN variance must)."""
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(state):
        a = state[key]
        if _is_constant(a):
            c = float(a.flat[0])
            noise = rng.uniform(0.5, 1.5, a.shape) * c if c > 0 else c + rng.normal(0.0, 0.05, a.shape)
            a = noise.astype(a.dtype)
        out[key] = a
    return out


def check_fit(
    model_name: str,
    checkpoint: Mapping[str, Tuple[int, ...]],
    expected: Mapping[str, Tuple[int, ...]],
    limit: int = 4,
) -> None:
    """Raise a one-line UserError naming the first offenders when a state dict does not fit."""
    missing = [k for k in expected if k not in checkpoint]
    unexpected = [k for k in checkpoint if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(checkpoint[k])} vs model {tuple(expected[k])}"
        for k in expected if k in checkpoint and tuple(checkpoint[k]) != tuple(expected[k])
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
            parts.append(f"{label} {len(items)} ({shown})")
    raise UserError(f"checkpoint does not fit {model_name}: " + "; ".join(parts))


def shapes_of(state: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}
