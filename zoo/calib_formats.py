"""Calibration sets on disk, in each int8 toolchain's own format, and a reader for the ``.npy`` one.

A set is a seeded, class-stratified sample of an image folder (``zoo.calibration``), written as:
each target's ``Target.calib_format`` says which kind: ``jpeg``, RGB JPEG files the toolchain decodes
itself (copied byte for byte where the source is an RGB JPEG); ``rgbchw``, raw float32 CHW 0-255
files resized and cropped per the variant's InputSpec; ``npy``, float32 ``.npy`` files preprocessed
and normalised exactly as the InputSpec says, which ``NpyCalibrationReader`` feeds to ONNX Runtime's
``quantize_static``. The set is built in a staging
folder and renamed into place, with a ``manifest.json`` that lists every file and its sha256.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
from PIL import Image

from zoo.calibration import IMAGE_SUFFIXES, image_files, stratified_sample
from zoo.errors import UserError
from zoo.targets.base import NPY_FORMAT, CalibFormat
from zoo.targets.quantize import StridedCalibrationReader
from zoo.registry.schema import InputSpec
from zoo.store import MANIFEST, sha256_of, staged, write_json

FILELIST = "filelist.txt"
KIND = "zoo-calibration-set/1"
PARALLEL_MIN = 32  # below this many images, starting worker processes costs more than it saves


def calibration_format(target: str) -> CalibFormat:
    """The format ``target``'s int8 toolchain reads (``Target.calib_format``)."""
    from zoo.targets import target_classes

    formats = {name: cls.calib_format for name, cls in target_classes().items() if cls.calib_format is not None}
    if target not in formats:
        raise UserError(f"target {target} has no calibration format (it has no int8 calibration step); "
                        f"calib writes for {', '.join(sorted(formats))}")
    return formats[target]


# Where each target's yaml keeps its calibration size (the first key present wins).
COUNT_KEYS: Tuple[Tuple[str, ...], ...] = (("calib_images",), ("quant", "calib_images"), ("int8", "calib_images"))


def default_count(options: Dict[str, Any]) -> Optional[int]:
    """The target yaml's calibration size, or None where it has none."""
    for path in COUNT_KEYS:
        node: Any = options
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return int(node)
    return None


# --- sampling ----------------------------------------------------------------------------------


@dataclass
class Sample:
    root: Path
    files: List[Path]      # in sample order
    classes: List[str]     # every class (parent folder relative to root) in the data
    available: int         # images in the data

    def class_of(self, f: Path) -> str:
        return f.parent.relative_to(self.root).as_posix()

    def covered(self) -> List[str]:
        return sorted({self.class_of(f) for f in self.files})


def sample_folder(data: Path, n: int, seed: int) -> Sample:
    """``n`` images of ``data``, class-stratified and seeded; a missing or empty folder is a UserError."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"data={data}: no such folder; give an image folder (an ImageFolder tree works)")
    files = image_files(root)
    if not files:
        raise UserError(f"data={data}: no images found (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    classes = sorted({f.parent.relative_to(root).as_posix() for f in files})
    return Sample(root, stratified_sample(files, n, seed), classes, len(files))


# --- one image in each format (module-level functions: they run in worker processes) -------------


def _write_jpeg(im: Image.Image, src: Path, dst: Path) -> str:
    from zoo.targets.vacc import save_calibration_jpeg

    if im.format == "JPEG" and im.mode == "RGB":
        im.load()  # a file that does not decode must not reach vamc
        shutil.copyfile(src, dst)
        return "copied"
    save_calibration_jpeg(im, dst)  # vamc's sampler takes JPEG only; the kit checks expect RGB
    return f"re-encoded from {im.format} {im.mode}"


def _write_rgbchw(im: Image.Image, spec: InputSpec, dst: Path) -> None:
    from zoo.targets.bpu import write_rgbchw

    write_rgbchw(im, spec, dst)


def _write_npy(im: Image.Image, spec: InputSpec, dst: Path) -> None:
    from zoo.preprocess import preprocess

    np.save(dst, preprocess(im, spec), allow_pickle=False)


def write_item(task: Tuple[str, Path, Path, Optional[InputSpec]]) -> Dict[str, Any]:
    """Decode one source image and write it in format ``kind``; returns its size, sha256 and how."""
    kind, src, dst, spec = task
    how = "preprocessed"
    try:
        with Image.open(src) as im:
            if kind == "jpeg":
                how = _write_jpeg(im, src, dst)
            elif kind == "rgbchw":
                _write_rgbchw(im, spec, dst)
            else:
                _write_npy(im, spec, dst)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{src}: cannot read this image ({e}); remove it from data or replace it") from None
    return {"size": dst.stat().st_size, "sha256": sha256_of(dst), "from": how}


def _run_tasks(tasks: List[Tuple[str, Path, Path, Optional[InputSpec]]], workers: int) -> Iterator[Dict[str, Any]]:
    """``write_item`` over ``tasks`` in order, in worker processes when there are enough of them."""
    if workers <= 1 or len(tasks) < PARALLEL_MIN:
        yield from map(write_item, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: the parent may hold threads (rich, Hydra's logging); a forked child could inherit a held lock
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield from pool.map(write_item, tasks, chunksize=4)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failed image, drop the queued ones


# --- the set -------------------------------------------------------------------------------------


def input_description(spec: InputSpec) -> Dict[str, Any]:
    d = asdict(spec)
    d.update(interpolation=spec.interpolation.value, color=spec.color.value, layout=spec.layout.value,
             resize=spec.resize_short())
    return d


def format_description(fmt: CalibFormat, spec: Optional[InputSpec]) -> Dict[str, Any]:
    d: Dict[str, Any] = {"kind": fmt.kind, "folder": fmt.folder, "suffix": fmt.suffix, "description": fmt.description}
    if fmt.kind in ("rgbchw", "npy") and spec is not None:
        d.update(dtype="float32", shape=[3, spec.size, spec.size] if spec.layout.value == "NCHW"
                 else [spec.size, spec.size, 3], normalised=fmt.kind == "npy")
    return d


def _readable_like_any_folder(path: Path) -> None:
    """The staging folder is created private (0700); the set, once in place, should not be."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


def build_set(sample: Sample, folder: Path, target: str, fmt: CalibFormat, spec: Optional[InputSpec], seed: int,
              requested: int, workers: int = 1, identity: Optional[Dict[str, Any]] = None,
              on_file: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
    """Write ``sample`` into ``folder`` (replacing it atomically) and return the manifest written there."""
    if fmt.needs_input and spec is None:
        raise ValueError(f"the {fmt.kind} format needs an InputSpec")
    if fmt.kind == "rgbchw":
        from zoo.targets.kit import require_rgb_nchw

        require_rgb_nchw(spec, "hb_mapper")  # .rgbchw is RGB CHW by definition
    width = max(5, len(str(len(sample.files) - 1)))
    names = [f"{i:0{width}d}{fmt.suffix}" for i in range(len(sample.files))]
    with staged(Path(folder)) as stage:
        _readable_like_any_folder(stage)
        data = stage / fmt.folder
        data.mkdir()
        tasks = [(fmt.kind, src, data / name, spec) for src, name in zip(sample.files, names)]
        records = []
        for src, name, done in zip(sample.files, names, _run_tasks(tasks, workers)):
            records.append({"name": f"{fmt.folder}/{name}", "source": src.relative_to(sample.root).as_posix(),
                            "class": sample.class_of(src), **done})
            if on_file is not None:
                on_file()
        if fmt.filelist:
            (data / FILELIST).write_text("".join(f"{name}\n" for name in names))
        covered = sample.covered()
        manifest = {
            "kind": KIND, "target": target, "format": format_description(fmt, spec),
            **(identity or {}),
            "input": input_description(spec) if spec is not None else None,
            "data": str(sample.root.resolve()), "seed": seed, "n_requested": requested, "n": len(records),
            "images_available": sample.available,
            "classes": {"total": len(sample.classes), "covered": len(covered),
                        "all_covered": len(covered) == len(sample.classes), "names": covered},
            "filelist": f"{fmt.folder}/{FILELIST}" if fmt.filelist else None,
            "files": records,
        }
        write_json(stage / MANIFEST, manifest)
    return manifest


# --- the ONNX Runtime reader ------------------------------------------------------------------------


def is_npy_set(folder: Path) -> bool:
    """Whether ``folder`` is a `zoo calib` set of preprocessed .npy files (rather than raw images)."""
    try:
        _npy_folder(folder)
        return True
    except UserError:
        return False


def _npy_folder(folder: Path) -> Path:
    """The folder holding filelist.txt: the set's ``npy/`` folder, or the set folder above it."""
    folder = Path(folder)
    for candidate in (folder, folder / NPY_FORMAT.folder):
        if (candidate / FILELIST).is_file():
            return candidate
    raise UserError(f"{folder}: no {FILELIST}; build the set with `python -m zoo calib target=onnx ...`")


class NpyCalibrationReader(StridedCalibrationReader):
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a calib set's ``.npy`` files.

    ``get_next`` returns ``{input_name: float32 [batch, ...]}`` until the range is exhausted; the
    last batch wraps round to the first files so a static-batch model always gets full batches.
    ``__len__`` (batches) and ``set_range`` let ``quantize_static`` collect one stride at a time.
    """

    def __init__(self, folder: Path, input_name: str, batch: int = 1) -> None:
        data = _npy_folder(folder)
        self.files = [data / line.strip() for line in (data / FILELIST).read_text().splitlines() if line.strip()]
        missing = [f.name for f in self.files if not f.is_file()]
        if missing or not self.files:
            raise UserError(f"{data}: {FILELIST} lists missing files ({', '.join(missing[:3])})" if missing
                            else f"{data}: {FILELIST} lists no files")
        if batch < 1:
            raise ValueError(f"batch {batch}: must be at least 1")
        self.set_folder = data if (data / MANIFEST).is_file() else data.parent
        super().__init__(input_name, batch)

    @property
    def classes_covered(self) -> Optional[int]:
        """How many classes the set covers, as its own manifest says (None without one)."""
        try:
            return int(json.loads((self.set_folder / MANIFEST).read_text())["classes"]["covered"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def count(self) -> int:
        return len(self.files)

    def item(self, i: int) -> np.ndarray:
        return np.load(self.files[i], allow_pickle=False)
