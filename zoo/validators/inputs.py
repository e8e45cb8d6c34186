"""Seeded inputs for numeric parity: random tensors and generated images, preprocessed as registered."""
from __future__ import annotations

from typing import Dict, List

import numpy as np
from PIL import Image, ImageDraw

from zoo.preprocess import preprocess
from zoo.registry.schema import InputSpec


def random_batch(spec: InputSpec, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, spec.size, spec.size), dtype=np.float32)


def generated_images(n: int, seed: int) -> List[Image.Image]:
    """Colour gradients, shapes and noise at varied sizes and aspect ratios: natural-ish statistics."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        w, h = int(rng.integers(240, 520)), int(rng.integers(240, 520))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin((xx + yy) / (20 + 10 * i))], axis=-1)
        noise = rng.normal(0, 0.05, size=(h, w, 3))
        arr = np.clip((base + noise) * 255, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
        images.append(img)
    return images


def parity_inputs(spec: InputSpec, seed: int = 0, n_random: int = 2, n_images: int = 3) -> Dict[str, np.ndarray]:
    """The named input sets every artifact is checked on."""
    imgs = np.stack([preprocess(im, spec) for im in generated_images(n_images, seed)])
    return {"random": random_batch(spec, n_random, seed), "images": imgs}
