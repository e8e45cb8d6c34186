"""Static int8 quantisation with ONNX Runtime: QDQ, per-channel, symmetric, calibrated on real pixels.

Shared by the targets whose int8 path is an ONNX Runtime QDQ model (onnx int8, ixRT int8). The
calibration reader hands ONNX Runtime one batch per collection pass, so memory stays flat however
many images are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from zoo.preprocess import preprocess
from zoo.registry.schema import InputSpec

METHODS = ("MinMax", "Entropy", "Percentile")


class StridedCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` that serves full batches, one stride at a time.

    ONNX Runtime keeps every intermediate activation of the data it is given until it computes the
    ranges, about 130 MB per image for a ResNeXt-50; ``__len__`` (batches) and ``set_range`` let
    ``quantize_static`` collect one batch per pass (``CalibStridedMinMax``), which keeps memory flat.
    A static batch takes only full batches: the last one wraps round to the first items, so no single
    item is over-weighted in the statistics. Subclasses say how many items there are and load one.
    """

    def __init__(self, input_name: str, batch: Optional[int] = None) -> None:
        if batch is not None and batch < 1:
            raise ValueError(f"batch {batch}: must be at least 1")
        self.input_name, self.batch = input_name, batch or 1
        self._range = (0, len(self))
        self._it: Optional[Iterator[Dict[str, np.ndarray]]] = None

    def __len__(self) -> int:
        return -(-self.count() // self.batch)

    def count(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def item(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def batch_indices(self, b: int) -> List[int]:
        return [(b * self.batch + i) % self.count() for i in range(self.batch)]

    def set_range(self, start_index: int, end_index: int) -> None:
        self._range = (start_index, min(end_index, len(self)))
        self._it = None

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        for b in range(*self._range):
            items = [self.item(i) for i in self.batch_indices(b)]
            yield {self.input_name: np.stack(items).astype(np.float32, copy=False)}

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


class ImageCalibrationReader(StridedCalibrationReader):
    """Calibration batches from PIL images, preprocessed exactly as the registry says."""

    def __init__(self, images: Sequence, spec: InputSpec, input_name: str, batch: Optional[int] = None) -> None:
        self.images, self.spec = list(images), spec
        super().__init__(input_name, batch)

    def count(self) -> int:
        return len(self.images)

    def item(self, i: int) -> np.ndarray:
        return preprocess(self.images[i], self.spec)


def quantize_qdq(src: Path, dst: Path, reader: StridedCalibrationReader, method: str = "MinMax",
                 per_channel: bool = True, symmetric: bool = True, quantize_bias: bool = True,
                 exclude: Sequence[str] = ()) -> Dict[str, object]:
    """Write the QDQ int8 model of ``src`` to ``dst``; returns the settings used (for the manifest)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"calibrate_method {method!r}: choose one of {', '.join(METHODS)}")
    # ORT's recommended pre-processing: shape inference and graph optimisation before calibration.
    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    # A closing Softmax (PaddleClas exports probabilities) stays in float: int8 probabilities of a
    # peaked distribution round to a handful of levels, and it costs nothing to keep it exact.
    exclude = list(exclude) + softmax_nodes(pre)
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": symmetric, "CalibStridedMinMax": 1}
    if not quantize_bias:
        extra["QuantizeBias"] = False
    quantize_static(
        str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=list(exclude) or None,
        extra_options=extra,
    )
    pre.unlink()
    return {"format": "QDQ", "activation": "QInt8", "weight": "QInt8", "per_channel": per_channel,
            "symmetric": symmetric, "calibrate_method": method, "calibration_images": reader.count(),
            "bias_quantized": quantize_bias, "excluded_nodes": list(exclude)}


def softmax_nodes(path: Path) -> List[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Softmax"]


def count_qdq(path: Path) -> Dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear nodes a model has (a real QDQ model has many)."""
    import onnx

    ops: List[str] = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}
