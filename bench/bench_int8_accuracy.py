"""Benchmark: time and peak memory of accuracy-aware int8 (``max_drop=``) on a large variant.

One run: a fresh torchvision checkpoint of the variant (seeded init) is saved, with an outlier
channel in some blocks (``--outliers layer2.0,layer3.0``: one BatchNorm channel x1e4 and the next
1x1 conv's input weights /1e4, the same fp32 function, an activation range int8 cannot hold, so
layers must go back to float); ``zoo convert`` builds its canonical fp32 ONNX; N seeded generated images are labelled by
that model's own top-1 (fp32 then scores 100% by construction, and the int8 drop is a real
measurement) and written as a flat folder with ``val_map.txt``; then ``zoo convert target=T
precision=int8 data=DIR max_drop=D`` runs as its own process, timed, with its peak RSS read from
the manifest (each stage's high-water mark, the kernel's VmHWM).

Usage:  python bench/bench_int8_accuracy.py [--model resnext101_32x8d] [--target openvino] [--images 300]
                                            [--max-drop 0.5] [--max-float-layers N] [--out bench/results/int8_accuracy.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List


SCALE = 1e4  # the outlier channel's factor (its conv's input weights get 1/SCALE)


def zoo(args: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True)


def checkpoint(model: str, path: Path, outliers: List[str], images: int) -> Path:
    """A seeded fresh init in torchvision's format, with an outlier channel in each block of ``outliers``
    and a classifier bias that centres the features of the benchmark's images."""
    import numpy as np
    import torch

    from zoo.converters.sources import get_adapter
    from zoo.preprocess import preprocess
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights
    from zoo.validators.inputs import generated_images

    reg = load_registry()
    v = resolve_variant(reg, model)
    w = select_weights(reg, v, "torchvision", None)
    net = get_adapter("torchvision").fresh(v, w, 0).eval()
    state = net.state_dict()  # the model's own tensors: edits below change the model too
    for block in outliers:
        state[f"{block}.bn2.weight"][0] *= SCALE
        state[f"{block}.bn2.bias"][0] *= SCALE
        state[f"{block}.conv3.weight"][:, 0] /= SCALE
    # A randomly initialised deep net maps every input to nearly the same feature vector, so its top-1
    # is one class for all images and int8 "agrees" trivially. Subtracting the mean feature in the
    # classifier's bias makes the top-1 depend on the input (the fp32 function changes in fc.bias only).
    feats: List = []
    net.fc.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].detach()))
    spec, pictures = effective_input(v, w), generated_images(images, seed=4242)
    with torch.no_grad():
        for i in range(0, images, 25):
            net(torch.from_numpy(np.stack([preprocess(im, spec) for im in pictures[i:i + 25]])))
        state["fc.bias"].copy_(-state["fc.weight"] @ torch.cat(feats).mean(0))
    torch.save(state, path)
    return path


def labelled_folder(model: str, out: Path, folder: Path, n: int) -> None:
    """N generated images labelled by the canonical fp32 model, as a flat folder with val_map.txt."""
    import numpy as np
    import onnxruntime as ort

    from zoo.preprocess import preprocess
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights
    from zoo.validators.inputs import generated_images

    reg = load_registry()
    v = resolve_variant(reg, model)
    w = select_weights(reg, v, "torchvision", None)
    spec = effective_input(v, w)
    sess = ort.InferenceSession(str(next(out.glob(f"{model}/torchvision/*/onnx/model.onnx"))),
                                providers=["CPUExecutionProvider"])
    folder.mkdir(parents=True)
    lines = []
    for i, img in enumerate(generated_images(n, seed=4242)):
        name = f"ILSVRC2012_val_{i + 1:08d}.png"
        img.save(folder / name)
        label = int(np.argmax(sess.run(None, {"input": preprocess(img, spec)[None]})[0]))
        lines.append(f"{name}\t{label}")
    (folder / "val_map.txt").write_text("\n".join(lines) + "\n")


def labels(folder: Path) -> List[int]:
    return [int(line.split("\t")[1]) for line in (folder / "val_map.txt").read_text().splitlines() if line]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnext101_32x8d")
    ap.add_argument("--target", default="openvino", choices=["onnx", "openvino"])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--max-float-layers", type=int, default=8)
    ap.add_argument("--outliers", default="layer2.0,layer3.0,layer3.1,layer3.2",
                    help="comma-separated blocks given an outlier channel ('' for none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "int8_accuracy.json")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out, data = Path(tmp) / "artifacts", Path(tmp) / "val"
        outliers = [b for b in args.outliers.split(",") if b]
        weights = checkpoint(args.model, Path(tmp) / "weights.pth", outliers, args.images)
        base = [f"model={args.model}", "source=torchvision", f"weights={weights}", f"out_dir={out}", "progress=false"]
        proc = zoo(["convert", *base, "target=onnx"])
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-2000:])
        labelled_folder(args.model, out, data, args.images)
        distinct = len(set(labels(data)))
        cmd = ["convert", *base, f"target={args.target}", "precision=int8", f"data={data}",
               f"max_drop={args.max_drop}"]
        if args.max_float_layers:
            cmd.append(f"max_float_layers={args.max_float_layers}")
        start = time.perf_counter()
        proc = zoo(cmd)
        wall = time.perf_counter() - start
        manifest = json.loads(next(out.glob(f"{args.model}/torchvision/*/{args.target}-int8/manifest.json")).read_text())
    acc = manifest["validation"]["accuracy_control"]
    report = {
        "what": f"{args.model} -> {args.target} int8 with max_drop={args.max_drop} on {args.images} labelled images "
                f"(seeded fresh weights, an outlier channel in {', '.join(outliers) or 'no block'}, labels from the fp32 "
                f"model's own top-1)",
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "command": "python -m zoo " + " ".join(cmd).replace(str(out.parent), "<tmp>"),
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        # the conversion's own high-water mark, as its manifest records it per stage (the kernel's VmHWM)
        "peak_rss_mib": max(manifest["peak_rss_mb"]["process"].values()),
        "peak_stage": max(manifest["peak_rss_mb"]["process"], key=manifest["peak_rss_mb"]["process"].get),
        "stage_seconds": manifest["timings_s"],
        "stage_peak_rss_mb": manifest["peak_rss_mb"],
        "labels": {"distinct_classes": distinct, "images": args.images},
        "accuracy_control": {k: acc[k] for k in ("fp32_top1", "first_int8_top1", "int8_top1", "drop_pp", "restored",
                                                 "passed")},
        "float_layers": acc["float_layers"],
        "status": manifest["status"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("wall_s", "peak_rss_mib", "accuracy_control", "status")}, indent=2))


if __name__ == "__main__":
    main()
