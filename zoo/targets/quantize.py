"""Static int8 quantisation with ONNX Runtime: QDQ, per-channel, symmetric, calibrated on real pixels.

Shared by the targets whose int8 path is an ONNX Runtime QDQ model (onnx int8, ixRT int8). The
calibration reader feeds preprocessed images one batch at a time, so memory stays flat however
many images are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from zoo.preprocess import preprocess
from zoo.registry.schema import InputSpec

METHODS = ("MinMax", "Entropy", "Percentile")


class ImageCalibrationReader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over PIL images, preprocessed as registered."""

    def __init__(self, images: Sequence, spec: InputSpec, input_name: str, batch: Optional[int] = None) -> None:
        self.images, self.spec, self.input_name = list(images), spec, input_name
        self.batch = batch or 1
        self._it: Optional[Iterator[Dict[str, np.ndarray]]] = None

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        for i in range(0, len(self.images), self.batch):
            chunk = [preprocess(im, self.spec) for im in self.images[i:i + self.batch]]
            while len(chunk) < self.batch:  # a static batch takes only full batches
                chunk.append(chunk[-1])
            yield {self.input_name: np.stack(chunk)}

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def quantize_qdq(src: Path, dst: Path, reader: ImageCalibrationReader, method: str = "MinMax",
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
    extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": symmetric}
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
            "symmetric": symmetric, "calibrate_method": method, "calibration_images": len(reader.images),
            "bias_quantized": quantize_bias, "excluded_nodes": list(exclude)}


def count_qdq(path: Path) -> Dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear nodes a model has (a real QDQ model has many)."""
    import onnx

    ops: List[str] = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}
