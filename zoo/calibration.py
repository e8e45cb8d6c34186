"""Calibration images for int8 targets: a seeded, class-stratified sample of a folder, or generated.

With a folder (an ImageFolder tree, or a flat folder of images), every class (sub-folder) is
represented once ``n`` is at least the number of classes, as the vendors' recipes ask. Without one,
seeded generated images stand in: enough to exercise and check the quantisation path, not to
reach published int8 accuracy. :class:`CalibrationSet` remembers what it handed out, so every int8
artifact records where its ranges came from (:func:`describe` is the one line every view shows).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
import hashlib
import os
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, TypeVar

import numpy as np
from PIL import Image

from zoo.errors import UserError

# What torchvision's ImageFolder reads: one list for calibration sets and validation sets alike.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

T = TypeVar("T")


def image_files(root: Path) -> List[Path]:
    """Image files anywhere under ``root`` (links to folders not followed), sorted; the scan is bounded."""
    from zoo.data.scan import Scan

    found = Scan(Path(root)).files(Path(root), 0, lambda n: os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES,
                                   follow_links=False)
    return sorted(p for p in found if p.is_file())


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
    return _load_rgb(sampled_files(Path(data), n, seed))


def sampled_files(data: Path, n: int, seed: int) -> List[Path]:
    """The seeded, class-stratified ``n`` image files of ``data``."""
    files = image_files(data)
    if not files:
        raise UserError(f"calib_data={data}: no images found (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    return stratified_sample(files, n, seed)


def _load_rgb(files: Sequence[Path]) -> List[Image.Image]:
    out = []
    for f in files:
        with Image.open(f) as im:
            out.append(im.convert("RGB"))
    return out


GENERATED = "generated"
FOLDER = "folder"


class CalibrationSet:
    """``n`` -> ``n`` calibration images, recording what was used: the manifest's ``calibration``."""

    def __init__(self, data: Optional[Path], seed: int) -> None:
        self.data, self.seed = (Path(data) if data is not None else None), seed
        self.files: List[Path] = []
        self.count = 0
        self.classes: Optional[int] = None

    def __call__(self, n: int) -> List[Image.Image]:
        if self.data is None:
            self.count = max(self.count, n)
            return calibration_images(n, self.seed)
        files = sampled_files(self.data, n, self.seed)
        self.note_files(files)
        return _load_rgb(files)

    def note_files(self, files: Sequence[Path], classes: Optional[int] = None) -> None:
        """The files a target read itself (a ``zoo calib`` set, whose manifest knows its classes)
        or that were sampled for it (their parent folders are the classes)."""
        self.files = sorted(set(self.files) | {Path(f) for f in files})
        self.count = len(self.files)
        self.classes = classes

    @property
    def used(self) -> bool:
        return self.count > 0

    def record(self, method: Optional[str] = None) -> Dict[str, Any]:
        """Where the calibration came from: generated, or which files of which folder (hashed)."""
        if self.data is None:
            return {"source": GENERATED, "images": self.count, "classes": None, "seed": self.seed,
                    "method": method, "sha256": None, "folder": None,
                    "warning": "seeded generated images, not real data: the int8 accuracy is unknown; "
                               "rebuild with calib_data=DIR (a folder of real images)"}
        digest = hashlib.sha256()
        for f in self.files:  # names and bytes: a changed or renamed image changes the hash
            digest.update(str(f.relative_to(self.data)).encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
        classes = self.classes if self.classes is not None else len({_parent_folder(f) for f in self.files})
        return {"source": FOLDER, "folder": str(self.data), "images": self.count, "classes": classes,
                "seed": self.seed, "method": method, "sha256": digest.hexdigest()}


def is_generated(record: Optional[Dict[str, Any]]) -> bool:
    return bool(record) and record.get("source") == GENERATED


def describe(record: Optional[Dict[str, Any]]) -> str:
    """One line for summaries, tables, kit READMEs and cards."""
    if not record:
        return "no calibration (not an int8 artifact)"
    method = f", {record['method']}" if record.get("method") else ""
    if record.get("source") == GENERATED:
        return (f"GENERATED images ({record['images']}, seed {record['seed']}{method}): not real data, "
                f"int8 accuracy unknown; rebuild with calib_data=DIR")
    classes = f", {record['classes']} classes" if record.get("classes") else ""
    where = Path(str(record.get("folder") or "")).name or "folder"
    return (f"{record['images']} images from {where}/{classes}, sha256 {str(record.get('sha256'))[:12]}…, "
            f"seed {record['seed']}{method}")
