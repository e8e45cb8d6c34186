"""Top-1/top-5 or FPS of a compiled model on its device: the VACC and BPU kits' ``device_eval.py``.

Copied verbatim into the kits; it depends on nothing from the zoo. Each backend takes one decoded RGB
image and preprocesses it the way its device does:

  vsx   VastAI VACC through vaststreamx: the raw image, RGB planar, into the kit's vdsp fusion op
        (resize, crop, normalise on the device) and the model suite, as the vendor's classification.py
  hbm   Horizon BPU through hbm_runtime (RDK OS 3.5+): resized and centre-cropped as the registry says,
        converted to the .bin's input type (nv12 by default), normalised inside the model
  onnx  the stand-in the kits were checked with on a machine without the device: ONNX Runtime on the
        kit's ONNX, with the same preprocessing as the device backend it stands in for (--like vsx|hbm)

The data set is an ImageFolder root with ``val_map.txt`` (``<image file name><TAB><label>`` per line);
``preprocess.json`` beside this file holds the registry's preprocessing and the published figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def resize_crop(img: Image.Image, spec: Dict[str, Any]) -> Image.Image:
    """The registry's evaluation geometry: short side to ``resize``, centre crop ``size`` (torchvision rounding)."""
    short, size = int(spec["resize"]), int(spec["size"])
    w, h = img.size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(new, RESAMPLE[spec["interpolation"]])
    left, top = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def vdsp_geometry(img: Image.Image, op: Dict[str, Any]) -> Image.Image:
    """What the VACC fusion op does to an image: resize to ResizeWidth x ResizeHeight, crop at CropX/CropY."""
    img = img.resize((int(op["ResizeWidth"]), int(op["ResizeHeight"])), Image.Resampling.BILINEAR)
    x, y = int(op["CropX"]), int(op["CropY"])
    return img.crop((x, y, x + int(op["OimageWidth"]), y + int(op["OimageHeight"])))


def normalised(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    x = (np.asarray(img, dtype=np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def bgr_to_nv12(bgr: np.ndarray) -> np.ndarray:
    """hb_mapper's nv12 input: I420 from OpenCV, its U and V planes interleaved, shape (1, H*3/2, W, 1)."""
    import cv2

    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    area = h * w
    u = i420[area:area + area // 4].reshape(h // 2, w // 2)
    v = i420[area + area // 4:].reshape(h // 2, w // 2)
    nv12 = np.concatenate([i420[:area], np.stack([u, v], axis=-1).reshape(-1)])
    return nv12.reshape(1, h * 3 // 2, w, 1).astype(np.uint8)


class Backend:
    """One image in, the model's 1000 scores out."""

    what = ""

    def __call__(self, img: Image.Image) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class VsxBackend(Backend):
    what = "VACC (vaststreamx)"

    def __init__(self, model: str, vdsp_params: Path, device: int) -> None:
        import vaststreamx as vsx

        self.vsx, self.device = vsx, device
        vsx.set_device(device)
        model_op = vsx.ModelOperator(vsx.Model(model, 1))
        fusion = vsx.Operator.load_ops_from_json_file(str(vdsp_params))[0]
        graph = vsx.Graph()
        graph.add_operators(fusion, model_op)
        self.stream = vsx.Stream(graph, vsx.StreamBalanceMode.ONCE)
        self.stream.register_operator_output(model_op)
        self.stream.build()

    def __call__(self, img: Image.Image) -> np.ndarray:
        w, h = img.size
        if w % 2 or h % 2:  # the vdsp ops take even sizes (as the vendor's classification.py does)
            img = img.resize((w - w % 2, h - h % 2), Image.Resampling.BILINEAR)
            w, h = img.size
        planar = np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
        image = self.vsx.create_image(planar, self.vsx.ImageFormat.RGB_PLANAR, w, h, self.device)
        out = self.stream.run_sync([image])
        return np.asarray(self.vsx.as_numpy(out[0][0])[0], dtype=np.float32).reshape(-1)


class HbmBackend(Backend):
    what = "BPU (hbm_runtime)"

    def __init__(self, model: str, spec: Dict[str, Any], input_type: str) -> None:
        import hbm_runtime

        self.spec, self.input_type = spec, input_type
        self.rt = hbm_runtime.HB_HBMRuntime(model)
        self.name = self.rt.model_names[0]
        self.input = self.rt.input_names[self.name][0]
        self.output = self.rt.output_names[self.name][0]

    def __call__(self, img: Image.Image) -> np.ndarray:
        rgb = np.asarray(resize_crop(img, self.spec), dtype=np.uint8)
        if self.input_type == "nv12":
            x = bgr_to_nv12(np.ascontiguousarray(rgb[..., ::-1]))
        elif self.input_type in ("rgb", "bgr"):
            x = (rgb if self.input_type == "rgb" else rgb[..., ::-1])[None]  # NHWC uint8, as hb_mapper's *_rt types
        else:
            raise SystemExit(f"device_eval: input_type_rt {self.input_type} is not handled here; use nv12, rgb or bgr")
        out = self.rt.run({self.name: {self.input: np.ascontiguousarray(x)}})[self.name]
        return np.asarray(out[self.output], dtype=np.float32).reshape(-1)


class OnnxStandIn(Backend):
    """The stand-in: ONNX Runtime on the kit's ONNX, preprocessed as the device backend named by ``like``."""

    def __init__(self, model: str, like: str, spec: Dict[str, Any], vdsp_params: Optional[Path]) -> None:
        import onnxruntime as ort

        self.sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.name, self.like, self.spec = self.sess.get_inputs()[0].name, like, spec
        self.op = json.loads(vdsp_params.read_text())["OpConfig"] if like == "vsx" else None
        self.what = f"ONNX Runtime {ort.__version__} (stand-in for {like})"

    def __call__(self, img: Image.Image) -> np.ndarray:
        if self.op is not None:
            x = normalised(vdsp_geometry(img, self.op), self.op["Mean"], self.op["Std"])
        else:
            x = normalised(resize_crop(img, self.spec), self.spec["mean"], self.spec["std"])
        return np.asarray(self.sess.run(None, {self.name: x})[0], dtype=np.float32).reshape(-1)


def read_val_map(root: Path) -> List[Tuple[Path, int]]:
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


def accuracy(run: Callable[[Image.Image], np.ndarray], items: Sequence[Tuple[Path, int]]) -> Dict[str, Any]:
    top1 = top5 = 0
    for path, label in items:
        with Image.open(path) as im:
            scores = run(im.convert("RGB"))
        best5 = np.argsort(-scores, kind="stable")[:5]
        top1 += int(best5[0] == label)
        top5 += int(label in best5)
    return {"top1": top1 / len(items), "top5": top5 / len(items), "correct1": top1, "correct5": top5,
            "images": len(items)}


def fps(run: Callable[[Image.Image], np.ndarray], image: Image.Image, warm_up: int, loop_count: int) -> float:
    """Images per second, one image per call (the kits' batch), after ``warm_up`` calls; preprocessing included,
    as on the device's own pipeline."""
    for _ in range(warm_up):
        run(image)
    start = time.perf_counter()
    for _ in range(loop_count):
        run(image)
    return loop_count / (time.perf_counter() - start)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Top-1/top-5 or FPS of the kit's compiled model on its device.")
    p.add_argument("--backend", choices=("vsx", "hbm", "onnx"), required=True)
    p.add_argument("--like", choices=("vsx", "hbm"), help="onnx: the device backend it stands in for")
    p.add_argument("--model", required=True, help="vsx: the suite prefix (deploy_weights/<name>/mod); hbm: the .bin; "
                                                   "onnx: the kit's .onnx")
    p.add_argument("--datasets_dir", required=True, type=Path, help="ImageFolder root with val_map.txt")
    p.add_argument("--test_mode", choices=("ACC", "FPS"), default="ACC")
    p.add_argument("--vdsp_params", type=Path, help="vsx: the kit's vdsp params json")
    p.add_argument("--input_type", default="nv12", help="hbm: the .bin's input_type_rt (nv12, rgb, bgr)")
    p.add_argument("--device", type=int, default=0)
    p.add_argument("--warm_up", type=int, default=10)
    p.add_argument("--loop_count", type=int, default=200)
    p.add_argument("--acc_target", type=float, default=-1.0)
    p.add_argument("--fps_target", type=float, default=-1.0)
    p.add_argument("--preprocess", type=Path, default=HERE / "preprocess.json")
    return p.parse_args(argv)


def open_backend(args: argparse.Namespace, meta: Dict[str, Any]) -> Backend:
    if args.backend == "vsx":
        return VsxBackend(args.model, args.vdsp_params, args.device)
    if args.backend == "hbm":
        return HbmBackend(args.model, meta["input"], args.input_type)
    if args.like is None:
        raise SystemExit("device_eval: --backend onnx needs --like vsx or --like hbm (the device it stands in for)")
    return OnnxStandIn(args.model, args.like, meta["input"], args.vdsp_params)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    meta = json.loads(args.preprocess.read_text())
    backend = open_backend(args, meta)
    items = read_val_map(args.datasets_dir)
    print(f"model {meta['model']} ({meta['precision']}), {backend.what}, {len(items)} images")
    if args.test_mode == "FPS":
        with Image.open(items[0][0]) as im:
            rate = fps(backend, im.convert("RGB"), args.warm_up, args.loop_count)
        print(f"FPS : {rate:.2f}")
        for f in meta.get("published_fps", []):
            print(f"published: {f['fps']} FPS at batch {f['batch']} {f['precision']} on {f['device']} ({f['published_in']})")
        return 0 if rate >= args.fps_target else 1
    acc = accuracy(backend, items)
    print(f"Top-1 Acc : {acc['top1']:.5f} = {acc['correct1']}/{acc['images']}")
    print(f"Top-5 Acc : {acc['top5']:.5f} = {acc['correct5']}/{acc['images']}")
    for p in meta.get("published_top1", []):
        print(f"published: top-1 {p['top1']}% top-5 {p.get('top5')}% ({p['published_in']})")
    return 0 if acc["top1"] >= args.acc_target else 1


if __name__ == "__main__":
    sys.exit(main())
