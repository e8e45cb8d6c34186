"""Calibration images for int8 targets: a seeded, class-stratified sample of a folder, or generated.

With a folder (an ImageFolder tree, or a flat folder of images), every class (sub-folder) is
represented once ``n`` is at least the number of classes, as the vendors' recipes ask. Without one,
seeded generated images stand in: enough to exercise and check the quantisation path, not to
reach published int8 accuracy.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, Hashable, List, Optional, Sequence, TypeVar

import numpy as np
from PIL import Image

from zoo.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

T = TypeVar("T")


def image_files(root: Path) -> List[Path]:
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _parent_folder(f: Path) -> str:
    return str(f.parent)


def stratified_sample(
    files: Sequence[T], n: int, seed: int, key: Optional[Callable[[T], Hashable]] = None
) -> List[T]:
    """``n`` items, round-robin over classes in a seeded order: every class first.

    The class of an item is ``key(item)``; by default a file's parent folder.
    """
    class_of = key or _parent_folder
    by_class: Dict[Hashable, List[T]] = defaultdict(list)
    for f in files:
        by_class[class_of(f)].append(f)
    rng = np.random.default_rng(seed)
    queues = []
    for cls in sorted(by_class):
        members = by_class[cls]
        queues.append([members[i] for i in rng.permutation(len(members))])
    order = [queues[i] for i in rng.permutation(len(queues))]
    picked: List[T] = []
    depth = 0
    while len(picked) < n and any(depth < len(q) for q in order):
        for q in order:
            if depth < len(q) and len(picked) < n:
                picked.append(q[depth])
        depth += 1
    return picked


def calibration_images(n: int, seed: int = 0, data: Optional[Path] = None) -> List[Image.Image]:
    """``n`` RGB images: sampled from ``data`` when given, else seeded generated images."""
    if data is None:
        from zoo.validators.inputs import generated_images

        return generated_images(n, seed + 1000)  # not the parity images: calibrate and check on different data
    files = image_files(Path(data))
    if not files:
        raise UserError(f"calib_data={data}: no images found (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    out = []
    for f in stratified_sample(files, n, seed):
        with Image.open(f) as im:
            out.append(im.convert("RGB"))
    return out
