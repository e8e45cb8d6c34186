"""Static int8 quantisation with ONNX Runtime: QDQ, per-channel, calibrated on real pixels.

Shared by the targets whose int8 path is an ONNX Runtime QDQ model (onnx int8, ixRT int8); each
target's yaml names its own types. ONNX Runtime's x86 kernels are fast for uint8 activations with
int8 weights (the VNNI / AMX u8s8 dot products); TensorRT-style builders want symmetric int8 for
both. The calibration reader hands ONNX Runtime one batch per collection pass, so memory stays flat
however many images are used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from zoo.preprocess import preprocess
from zoo.registry.schema import InputSpec

METHODS = ("MinMax", "Entropy", "Percentile")
TYPES = ("QInt8", "QUInt8")


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
                 per_channel: bool = True, activation_type: str = "QInt8", weight_type: str = "QInt8",
                 activation_symmetric: bool = True, weight_symmetric: bool = True, quantize_bias: bool = True,
                 exclude: Sequence[str] = ()) -> Dict[str, object]:
    """Write the QDQ int8 model of ``src`` to ``dst``; returns the settings used (for the manifest)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"calibrate_method {method!r}: choose one of {', '.join(METHODS)}")
    for t in (activation_type, weight_type):
        if t not in TYPES:
            raise ValueError(f"quantisation type {t!r}: choose one of {', '.join(TYPES)}")
    # ORT's recommended pre-processing: shape inference and graph optimisation before calibration.
    pre = Path(dst).with_name(Path(dst).stem + ".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    # A closing Softmax (PaddleClas exports probabilities) stays in float: int8 probabilities of a
    # peaked distribution round to a handful of levels, and it costs nothing to keep it exact.
    exclude = list(exclude) + softmax_nodes(pre)
    extra = {"ActivationSymmetric": activation_symmetric, "WeightSymmetric": weight_symmetric, "CalibStridedMinMax": 1}
    if not quantize_bias:
        extra["QuantizeBias"] = False
    quantize_static(
        str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=getattr(QuantType, activation_type), weight_type=getattr(QuantType, weight_type),
        calibrate_method=getattr(CalibrationMethod, method), nodes_to_exclude=list(exclude) or None,
        extra_options=extra,
    )
    pre.unlink()
    return {"format": "QDQ", "activation": activation_type, "weight": weight_type, "per_channel": per_channel,
            "activation_symmetric": activation_symmetric, "weight_symmetric": weight_symmetric,
            "calibrate_method": method, "calibration_images": reader.count(),
            "bias_quantized": quantize_bias, "excluded_nodes": list(exclude)}


def calibration_reader(job, n: int, batch: Optional[int]) -> StridedCalibrationReader:
    """The job's calibration data as a reader: a `zoo calib` .npy set as it is, else ``n`` images
    drawn through the job's calibration set (which records what was used)."""
    from zoo.calib_formats import NpyCalibrationReader, is_npy_set

    if job.calib_data is not None and is_npy_set(job.calib_data):
        reader = NpyCalibrationReader(job.calib_data, job.spec.input_name, batch or 1)
        job.calibration.note_files(reader.files, classes=reader.classes_covered)
        return reader
    return ImageCalibrationReader(job.calibration(n), job.input, job.spec.input_name, batch)


def calibration_batches(reader: StridedCalibrationReader) -> List[np.ndarray]:
    """Every batch the reader serves, as arrays (the form NNCF's ``Dataset`` takes)."""
    reader.set_range(0, len(reader))
    return [b[reader.input_name] for b in iter(reader.get_next, None)]


def softmax_nodes(path: Path) -> List[str]:
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "Softmax"]


def count_qdq(path: Path) -> Dict[str, int]:
    """How many QuantizeLinear / DequantizeLinear nodes a model has (a real QDQ model has many)."""
    import onnx

    ops: List[str] = [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]
    return {"QuantizeLinear": ops.count("QuantizeLinear"), "DequantizeLinear": ops.count("DequantizeLinear")}
