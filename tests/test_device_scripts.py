"""The VACC and BPU kits' device-side scripts, run as a device engineer runs them, with ONNX Runtime on the
kit's ONNX in place of the device (BACKEND=onnx: the stand-in the scripts name as such); top-1/top-5 are
recomputed here independently. vaststreamx and hbm_runtime are not on this machine."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import run_zoo
from PIL import Image

VARIANT, N = "resnext50_32x4d", 6
LABELS = [(i * 37) % 1000 for i in range(N)]


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    out = tmp_path_factory.mktemp("kits") / "artifacts"
    for target, precision, extra in (("vacc", "fp16", []), ("bpu", "int8", ["target.calib_images=2"])):
        proc = run_zoo("convert", f"model={VARIANT}", "source=torchvision", f"target={target}", f"precision={precision}",
                       "weights=random", f"out_dir={out}", "progress=false", *extra)
        assert proc.returncode == 0, proc.stderr[-2000:]
    root = out / VARIANT / "torchvision" / "IMAGENET1K_V1"
    return {"vacc": root / "vacc-fp16", "bpu": root / "bpu-int8"}


@pytest.fixture(scope="module")
def val(tmp_path_factory):
    """An ImageFolder of seeded images of different sizes (one odd), with val_map.txt."""
    from zoo.validators.inputs import generated_images

    root = tmp_path_factory.mktemp("val")
    lines = []
    for i, im in enumerate(generated_images(N, seed=11)):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        im.resize((300 + 2 * i, 260 + 3 * i)).save(root / f"c{i % 2}" / f"v_{i}.JPEG", quality=95)
        lines.append(f"v_{i}.JPEG\t{LABELS[i]}")
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


def _run(kit: Path, script: str, val: Path, *args: str) -> subprocess.CompletedProcess:
    onnx = next(p for p in kit.glob("*.onnx"))
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])  # python3: this one
    env = {**os.environ, "PATH": path, "DATASETS_DIR": str(val), "BACKEND": "onnx", "MODEL": str(onnx)}
    proc = subprocess.run(["bash", script, *args], cwd=kit, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _counts(stdout: str) -> tuple:
    return tuple(tuple(int(v) for v in re.search(rf"Top-{k} Acc : [\d.]+ = (\d+)/(\d+)", stdout).groups())
                 for k in (1, 5))


def _expected(onnx: Path, inputs: list) -> tuple:
    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    order = np.stack([np.argsort(-sess.run(None, {name: x})[0].reshape(-1), kind="stable")[:5] for x in inputs])
    labels = np.array(LABELS)
    return (int((order[:, 0] == labels).sum()), N), (int((order == labels[:, None]).any(axis=1).sum()), N)


def test_vacc_scripts_with_the_stand_in_do_what_the_vdsp_op_does(kits, val):
    kit = kits["vacc"]
    acc = _run(kit, "infer_accuracy.sh", val)
    assert "stand-in for vsx" in acc.stdout and "published: top-1 77.618" in acc.stdout
    # independently: the vdsp fusion op as its json says (square resize, crop at CropX/CropY, float16 mean/std)
    op = json.loads(next(kit.glob("*vdsp_params.json")).read_text())["OpConfig"]
    inputs = []
    for i in range(N):
        im = Image.open(val / f"c{i % 2}" / f"v_{i}.JPEG").convert("RGB")
        im = im.resize((op["ResizeWidth"], op["ResizeHeight"]), Image.Resampling.BILINEAR)
        a = np.asarray(im, np.float32)[op["CropY"]:op["CropY"] + op["OimageHeight"], op["CropX"]:op["CropX"] + op["OimageWidth"]]
        inputs.append(((a / 255 - np.array(op["Mean"], np.float32)) / np.array(op["Std"], np.float32)).transpose(2, 0, 1)[None])
    assert _counts(acc.stdout) == _expected(next(kit.glob("*.onnx")), inputs)
    perf = _run(kit, "infer_performance.sh", val, "--warm_up", "1", "--loop_count", "3")
    assert float(re.search(r"FPS : ([\d.]+)", perf.stdout).group(1)) > 0


def test_bpu_scripts_with_the_stand_in_preprocess_as_the_registry_says(kits, val):
    from zoo.preprocess import preprocess
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    kit = kits["bpu"]
    acc = _run(kit, "infer_accuracy.sh", val)
    assert "stand-in for hbm" in acc.stdout
    reg = load_registry()
    v = resolve_variant(reg, VARIANT)
    spec = effective_input(v, select_weights(reg, v, "torchvision", None))
    inputs = [preprocess(Image.open(val / f"c{i % 2}" / f"v_{i}.JPEG"), spec)[None] for i in range(N)]
    assert _counts(acc.stdout) == _expected(next(kit.glob("*.onnx")), inputs)
    perf = _run(kit, "infer_performance.sh", val, "--warm_up", "1", "--loop_count", "3")
    assert "published: 189.61 FPS at batch 1 int8 on RDK X5" in perf.stdout
    text = (kit / "KIT.md").read_text()
    assert "bash infer_accuracy.sh" in text and "did not run here" in text


def test_nv12_is_y_then_interleaved_u_v_in_bt601_video_range():
    spec = importlib.util.spec_from_file_location("device_eval", Path(__file__).parents[1] / "zoo/targets/device_eval.py")
    device_eval = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_eval)
    r, g, b = 200, 100, 50
    bgr = np.zeros((4, 6, 3), np.uint8) + np.array([b, g, r], np.uint8)
    nv12 = device_eval.bgr_to_nv12(bgr)
    assert nv12.shape == (1, 6, 6, 1) and nv12.dtype == np.uint8
    # BT.601 video range, which OpenCV's BGR2YUV_I420 (the vendor's sample conversion) produces
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    plane = nv12[0, :, :, 0]
    assert np.abs(plane[:4].astype(float) - y).max() <= 1
    uv = plane[4:].reshape(-1)
    assert np.abs(uv[0::2].astype(float) - u).max() <= 1 and np.abs(uv[1::2].astype(float) - v).max() <= 1
