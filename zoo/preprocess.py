"""The registry's evaluation preprocessing, applied with PIL: resize short side, centre crop, normalise."""
from __future__ import annotations

import numpy as np
from PIL import Image

from zoo.registry.schema import InputSpec

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resize_crop(img: Image.Image, spec: InputSpec) -> Image.Image:
    """Resize the short side and centre-crop, as the spec says; RGB, not normalised."""
    img = img.convert("RGB")
    short = spec.resize_short()
    w, h = img.size
    if w <= h:
        new = (short, int(short * h / w))
    else:
        new = (int(short * w / h), short)
    img = img.resize(new, _RESAMPLE[spec.interpolation.value])
    # Centre crop with torchvision's rounding, so the two agree pixel for pixel.
    left = int(round((new[0] - spec.size) / 2.0))
    top = int(round((new[1] - spec.size) / 2.0))
    return img.crop((left, top, left + spec.size, top + spec.size))


def preprocess(img: Image.Image, spec: InputSpec) -> np.ndarray:
    """One RGB image -> float32 CHW (or HWC) array, normalised as the spec says."""
    x = np.asarray(resize_crop(img, spec), dtype=np.float32) / 255.0
    if spec.color.value == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1) if spec.layout.value == "NCHW" else x, dtype=np.float32)
