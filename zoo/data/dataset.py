"""Labelled evaluation images on disk, in the three layouts ImageNet validation sets come in.

- ``imagefolder``: one sub-folder of images per class; the label is the index of the folder in
  the sorted folder names (torchvision's ImageFolder rule: wnid folders sort into ImageNet order).
- ``val_label``: a flat folder of ``ILSVRC2012_val_*.JPEG`` and ``val_label.txt``, one
  ``<name> <label>`` per line (space separated).
- ``val_map``: the same with ``val_map.txt``, ``<name>\\t<label>`` per line (tab separated).

A label file is found inside the folder (or beside it, as the ``ImageNet/val`` + ``ImageNet/val_label.txt``
layout has it) or given explicitly; its format is told by its separator, not its name. Entries whose
image does not exist are counted in ``missing`` and skipped, so one lost file never stops a 50,000-image run.
Folders are scanned within bounds (``zoo.data.scan``): a folder that is not an image set fails with one line.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from zoo.calibration import IMAGE_SUFFIXES, stratified_sample
from zoo.data.scan import MAX_DEPTH, MAX_ENTRIES, Scan
from zoo.errors import UserError

LABEL_FILE_NAMES = ("val_map.txt", "val_label.txt")  # looked for in this order
EXPECTED = (
    "expected an ImageFolder tree (one sub-folder of images per class) or a folder of images with "
    "val_label.txt ('<name> <label>' lines) or val_map.txt ('<name>\\t<label>' lines), "
    "or a label file given explicitly"
)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    root: Path
    layout: str  # "imagefolder" | "val_label" | "val_map"
    samples: List[Sample]
    missing: List[str] = field(default_factory=list)  # label-file entries whose image does not exist
    classes: Optional[List[str]] = None  # ImageFolder class folder names (sorted = label index)
    label_file: Optional[Path] = None
    image_dir: Optional[Path] = None  # where label-file names are resolved

    def num_labels(self) -> int:
        """Distinct labels the samples use (ImageFolder: the number of class folders)."""
        if self.classes is not None:
            return len(self.classes)
        return len({s.label for s in self.samples})


def open_dataset(root: Path, labels: Optional[Path] = None, max_entries: int = MAX_ENTRIES,
                 max_depth: int = MAX_DEPTH) -> Dataset:
    """Detect the layout of ``root`` and read its samples; a folder with no known layout, or one past the scan
    bounds (``max_entries`` files and folders, ``max_depth`` levels), is a UserError."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; {EXPECTED}")
    if labels is not None:
        labels = Path(labels).expanduser()
        if not labels.is_file():
            raise UserError(f"label file {labels} does not exist")
        return _read_label_layout(root, labels, root)
    scan = Scan(root, max_entries, max_depth)
    found = _find_label_file(root, scan)
    if found is not None:
        label_file, image_dir = found
        return _read_label_layout(root, label_file, image_dir)
    classes = _class_folders(root, scan)
    if classes:
        return _read_imagefolder(root, classes, scan)
    raise UserError(f"{root}: no dataset layout recognised; {EXPECTED}")


def stratified_subset(samples: Sequence[Sample], n: int, seed: int) -> List[Sample]:
    """``n`` samples, every label represented once ``n`` reaches the number of labels; seeded.

    The subset keeps the dataset's order (reads stay sequential on disk); ``n`` at or above the
    number of samples gives them all.
    """
    if n >= len(samples):
        return list(samples)
    picked = stratified_sample(range(len(samples)), n, seed, key=lambda i: samples[i].label)
    return [samples[i] for i in sorted(picked)]


def check_labels(dataset: Dataset, num_classes: int) -> None:
    """Refuse a dataset whose labels cannot index the model's ``num_classes`` outputs.

    An ImageFolder tree with a different number of class folders (a 10-class subset of ImageNet)
    would number its classes 0..9 instead of by their ImageNet index: every score would be wrong.
    """
    if dataset.classes is not None and len(dataset.classes) != num_classes:
        raise UserError(
            f"{dataset.root}: {len(dataset.classes)} class folders but the model has {num_classes} classes; "
            f"ImageFolder labels are folder indices, so every class folder must be present "
            f"(use a label file for a partial set)"
        )
    bad = sorted({s.label for s in dataset.samples if not 0 <= s.label < num_classes})
    if bad:
        raise UserError(
            f"{dataset.label_file or dataset.root}: labels {bad[:5]} are outside 0..{num_classes - 1} "
            f"for a {num_classes}-class model"
        )


def _find_label_file(root: Path, scan: Scan) -> Optional[Tuple[Path, Path]]:
    """(label file, folder its names are relative to): inside ``root``, else beside it."""
    for name in LABEL_FILE_NAMES:
        inside = root / name
        if inside.is_file():
            # ImageNet/{val/, val_label.txt} given as ImageNet/: the images are in val/.
            image_dir = root / "val" if _holds_no_images(root) and (root / "val").is_dir() else root
            return inside, image_dir
    for name in LABEL_FILE_NAMES:
        beside = root.parent / name
        if beside.is_file() and not _class_folders(root, scan):
            return beside, root
    return None


def _holds_no_images(folder: Path) -> bool:
    return not any(e.is_file() and _is_image(e.name) for e in os.scandir(folder))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _read_label_layout(root: Path, label_file: Path, image_dir: Path) -> Dataset:
    entries, layout = parse_label_file(label_file)
    samples: List[Sample] = []
    missing: List[str] = []
    for name, label in entries:
        path = image_dir / name
        if path.is_file():
            samples.append(Sample(path, label))
        else:
            missing.append(name)
    if not samples:
        # Not one image found: the wrong folder, not a few lost files.
        raise UserError(f"{label_file}: none of its {len(missing)} images are in {image_dir}")
    return Dataset(root, layout, samples, missing, None, label_file, image_dir)


def parse_label_file(label_file: Path) -> Tuple[List[Tuple[str, int]], str]:
    """The (name, label) entries of a label file and its format, told by the separator it uses."""
    lines = [(i, line.rstrip("\r\n")) for i, line in enumerate(_read_lines(label_file), 1)]
    lines = [(i, line) for i, line in lines if line.strip()]
    if not lines:
        raise UserError(f"{label_file}: empty label file; {EXPECTED}")
    layout = "val_map" if "\t" in lines[0][1] else "val_label"
    return [_parse_entry(label_file, i, line, layout) for i, line in lines], layout


def _read_lines(label_file: Path) -> List[str]:
    try:
        return label_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{label_file}: not a text label file; {EXPECTED}") from None


def _parse_entry(label_file: Path, lineno: int, line: str, layout: str) -> Tuple[str, int]:
    parts = line.split("\t") if layout == "val_map" else line.split()
    parts = [p.strip() for p in parts if p.strip()]
    if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
        sep = "'<name>\\t<label>'" if layout == "val_map" else "'<name> <label>'"
        raise UserError(f"{label_file}:{lineno}: expected {sep} with an integer label, found {line!r}")
    return parts[0], int(parts[1])


def _class_folders(root: Path, scan: Scan) -> List[str]:
    """Sorted names of the sub-folders, when at least one holds an image; hidden folders are not classes."""
    names = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if any(scan.any_file(root / n, 1, _is_image) for n in names):
        return names
    return []


def _read_imagefolder(root: Path, classes: List[str], scan: Scan) -> Dataset:
    # Image files anywhere under each class folder, in torchvision's order (sorted walk, links followed).
    samples = [Sample(path, label) for label, name in enumerate(classes)
               for path in scan.files(root / name, 1, _is_image)]
    return Dataset(root, "imagefolder", samples, [], classes)
