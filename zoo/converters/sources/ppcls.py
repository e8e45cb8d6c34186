"""PaddleClas: its ResNeXt / ResNeXt-vd / WSL definitions (PaddleClas parameter names), ``.pdparams``.

Export follows PaddleClas's own recipe: ``paddle.jit.save`` of the inference model with a softmax
appended (the registry records ppcls outputs as probabilities), then paddle2onnx.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from zoo.converters.spec import OnnxSpec
from zoo.converters.sources.base import SourceAdapter


class PpclsAdapter(SourceAdapter):
    name = "ppcls"
    framework = "paddlepaddle"
    checkpoint_suffix = ".pdparams"

    def __init__(self) -> None:
        import paddle

        paddle.set_device("cpu")
        self._softmax = True

    def seed(self, seed: int) -> None:
        import paddle

        paddle.seed(seed)

    def build(self, variant, weights, checkpoint: Optional[Path]) -> Any:
        from zoo.converters.sources.pdparams import load_into, load_pdparams
        from zoo.converters.sources.ppcls_arch import build_ppcls_model

        self._softmax = weights.output.value == "probs"
        model = build_ppcls_model(weights.model_name, num_classes=variant.arch.num_classes)
        if checkpoint is not None:
            load_into(model, load_pdparams(checkpoint), weights.model_name)
        model.eval()
        return model

    def save_checkpoint(self, model: Any, path: Path) -> None:
        from zoo.converters.sources.pdparams import save_layer_state

        save_layer_state(model, path)  # what paddle.save writes (what PaddleClas publishes), streamed

    def state_arrays(self, model: Any) -> Dict[str, np.ndarray]:
        return {k: v.numpy().copy() for k, v in model.state_dict().items()}

    def iter_state_arrays(self, model: Any) -> Iterator[Tuple[str, np.ndarray]]:
        for k, v in model.state_dict().items():
            yield k, v.numpy()  # one copy at a time

    def update_state_arrays(self, model: Any, arrays: Dict[str, np.ndarray]) -> None:
        own = model.state_dict()
        for k, a in arrays.items():
            own[k].set_value(np.ascontiguousarray(a))

    def canonical_state(self, model: Any) -> Dict[str, np.ndarray]:
        from zoo.converters.sources.ppcls_names import to_canonical

        return to_canonical(self.state_arrays(model))

    def export_onnx(self, model: Any, path: Path, spec: OnnxSpec, size: int) -> None:
        from zoo.converters.sources.paddle_export import paddle_to_onnx

        paddle_to_onnx(model, path, opset=spec.opset, dynamic_batch=spec.dynamic_batch, batch=spec.batch,
                       size=size, input_name=spec.input_name, append_softmax=self._softmax)

    def run(self, model: Any, x: np.ndarray) -> np.ndarray:
        import paddle
        import paddle.nn.functional as F

        with paddle.no_grad():
            y = model(paddle.to_tensor(x))
            if self._softmax:
                y = F.softmax(y, axis=-1)
        return y.numpy()
