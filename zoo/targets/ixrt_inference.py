"""Accuracy and speed of an ixRT engine on the device, in the manner of DeepSparkInference's inference.py.

Copied verbatim into every ixRT kit as ``inference.py``; it depends on nothing from the zoo. The
engine runs through the kit's ``build_engine.py`` (the ixRT SDK and cuda-python). Given the kit's
static-batch ONNX file instead of an engine, it runs ONNX Runtime: the stand-in the kit was checked
with on a machine without the device (same preprocessing, same batching, same printout).

    python3 inference.py --engine_file M_float16_bs32.engine --datasets_dir /data/imagenet_val --test_mode ACC
    python3 inference.py --engine_file M_float16_bs32.engine --datasets_dir /data/imagenet_val --test_mode FPS

The data set is an ImageFolder root with ``val_map.txt`` (``<image file name><TAB><label>`` per line);
``preprocess.json`` beside this file holds the registry's preprocessing and the published figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def preprocess(path: Path, spec: Dict[str, Any]) -> np.ndarray:
    """Resize the short side, centre-crop (torchvision's rounding), scale to 0-1, normalise: CHW float32."""
    img = Image.open(path).convert("RGB")
    short, size = int(spec["resize"]), int(spec["size"])
    w, h = img.size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(new, RESAMPLE[spec["interpolation"]])
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    x = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    if spec.get("color") == "BGR":
        x = x[..., ::-1]
    x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def read_val_map(root: Path) -> List[Tuple[Path, int]]:
    """(image path, label) for each line of ``val_map.txt``; the image is found anywhere under ``root``."""
    found = {p.name: p for p in root.rglob("*") if p.is_file()}
    items = []
    for n, line in enumerate((root / "val_map.txt").read_text().splitlines(), 1):
        if not line.strip():
            continue
        name, _, label = line.strip().rpartition("\t") if "\t" in line else line.strip().rpartition(" ")
        if name not in found:
            raise SystemExit(f"val_map.txt line {n}: no image named {name} under {root}")
        items.append((found[name], int(label)))
    return items


def batches(items: Sequence[Tuple[Path, int]], bsz: int, spec: Dict[str, Any]) -> Iterator[Tuple[np.ndarray, np.ndarray, int]]:
    """Static batches: the last one is padded with its own last image; ``keep`` says how many rows count."""
    for i in range(0, len(items), bsz):
        chunk = items[i:i + bsz]
        keep = len(chunk)
        chunk = list(chunk) + [chunk[-1]] * (bsz - keep)
        yield np.stack([preprocess(p, spec) for p, _ in chunk]), np.array([lab for _, lab in chunk]), keep


def open_model(path: Path) -> Tuple[Callable[[np.ndarray], np.ndarray], int, str]:
    """(run one batch, the static batch, what runs it): the engine on the device, or the ONNX stand-in."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        batch = inp.shape[0] if isinstance(inp.shape[0], int) else 1
        return (lambda x: sess.run(None, {inp.name: x})[0]), batch, f"ONNX Runtime {ort.__version__} (stand-in)"
    sys.path.insert(0, str(HERE))
    from build_engine import EngineRunner  # the kit's builder: ixRT and cuda-python

    runner = EngineRunner(path)
    return runner, runner.batch, "ixRT engine"


def accuracy(run: Callable[[np.ndarray], np.ndarray], bsz: int, items: Sequence[Tuple[Path, int]],
             spec: Dict[str, Any]) -> Dict[str, Any]:
    top1 = top5 = total = 0
    for x, labels, keep in batches(items, bsz, spec):
        scores = np.asarray(run(x), dtype=np.float32).reshape(bsz, -1)[:keep]
        best5 = np.argsort(-scores, axis=1, kind="stable")[:, :5]
        top1 += int((best5[:, 0] == labels[:keep]).sum())
        top5 += int((best5 == labels[:keep, None]).any(axis=1).sum())
        total += keep
    return {"top1": top1 / total, "top5": top5 / total, "correct1": top1, "correct5": top5, "images": total}


def throughput(run: Callable[[np.ndarray], np.ndarray], bsz: int, x: np.ndarray, warm_up: int,
               loop_count: int) -> float:
    """Images per second over ``loop_count`` runs of one batch, after ``warm_up`` runs."""
    for _ in range(warm_up):
        run(x)
    start = time.perf_counter()
    for _ in range(loop_count):
        run(x)
    return bsz * loop_count / (time.perf_counter() - start)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Top-1/top-5 or FPS of the kit's engine (or its ONNX stand-in).")
    p.add_argument("--engine_file", required=True, type=Path, help="the .engine (or the static .onnx stand-in)")
    p.add_argument("--datasets_dir", required=True, type=Path, help="ImageFolder root with val_map.txt")
    p.add_argument("--test_mode", choices=("ACC", "FPS"), default="ACC")
    p.add_argument("--bsz", type=int, default=None, help="the engine's static batch (read from the engine)")
    p.add_argument("--warm_up", type=int, default=3)
    p.add_argument("--loop_count", type=int, default=20)
    p.add_argument("--acc_target", type=float, default=-1.0)
    p.add_argument("--fps_target", type=float, default=-1.0)
    p.add_argument("--preprocess", type=Path, default=HERE / "preprocess.json")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    meta = json.loads(args.preprocess.read_text())
    run, batch, what = open_model(args.engine_file)
    if args.bsz is not None and args.bsz != batch:
        print(f"inference: --bsz {args.bsz} but {args.engine_file.name} takes batches of {batch}", file=sys.stderr)
        return 2
    items = read_val_map(args.datasets_dir)
    print(f"model {meta['model']} ({meta['precision']}), {what}, batch {batch}, {len(items)} images")
    if args.test_mode == "FPS":
        x = next(batches(items, batch, meta["input"]))[0]
        fps = throughput(run, batch, x, args.warm_up, args.loop_count)
        print(f"FPS : {fps:.2f}")
        for f in meta.get("published_fps", []):
            print(f"published: {f['fps']} FPS at batch {f['batch']} {f['precision']} on {f['device']} ({f['published_in']})")
        print(f"Performance Check : Test {fps:.2f} >= target {args.fps_target}")
        return 0 if fps >= args.fps_target else 1
    acc = accuracy(run, batch, items, meta["input"])
    print(f"Acc@1 : {acc['top1']:.5f} = {acc['correct1']}/{acc['images']}")
    print(f"Acc@5 : {acc['top5']:.5f} = {acc['correct5']}/{acc['images']}")
    for p in meta.get("published_top1", []):
        print(f"published: top-1 {p['top1']}% top-5 {p.get('top5')}% ({p['published_in']})")
    print(f"Accuracy Check : Test {acc['top1']:.5f} >= target {args.acc_target}")
    return 0 if acc["top1"] >= args.acc_target else 1


if __name__ == "__main__":
    sys.exit(main())
