"""Decode one image file to RGB, or say in a word why it cannot be: never raise.

Conversions follow torchvision's loader (``Image.open(f).convert("RGB")``): CMYK, grayscale,
palette and alpha images become RGB, alpha dropped; EXIF orientation is not applied, as the
published accuracies were measured without it. One exception: 16-bit grayscale is scaled to
8 bits rather than clipped at 255 (PIL's plain convert would turn it nearly white).
The file is fully decoded here, so a truncated JPEG fails here, counted, not later in a batch.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

# Reasons an image is skipped; EvalResult counts them by these words.
EMPTY = "empty file"
NOT_IMAGE = "not an image"
TRUNCATED = "truncated"
TOO_LARGE = "too large"
UNREADABLE = "unreadable"
NO_FILE = "no such file"

_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N"}


def load_rgb(path: Path) -> Tuple[Optional[Image.Image], Optional[str]]:
    """(RGB image, None), or (None, reason) for a file that cannot be decoded."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return None, EMPTY
        with warnings.catch_warnings():
            # Corrupt-EXIF and palette-transparency warnings would flood a 50,000-image run.
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()  # full decode: truncation shows here
                return to_rgb(img), None
    except FileNotFoundError:
        return None, NO_FILE
    except UnidentifiedImageError:
        return None, NOT_IMAGE
    except Image.DecompressionBombError:
        return None, TOO_LARGE
    except (OSError, SyntaxError, ValueError) as e:  # PIL's decoders raise all three on bad data
        return None, TRUNCATED if "truncated" in str(e).lower() else UNREADABLE


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB (a new image, detached from the file)."""
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.getextrema()[1] > 255):
        eight = np.round(np.asarray(img, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return Image.fromarray(eight, "L").convert("RGB")
    return img.convert("RGB")
