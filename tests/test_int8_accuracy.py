"""Int8 accuracy on a model that really classifies: the digits ResNeXt (tests/digits_model.py), trained
on real images, so top-1 of int8 against fp32 measures quantisation and not chance.

The accuracy-aware path is forced the way it happens in the field: an outlier channel. Scaling one
channel of a BatchNorm by 1000 and the next 1x1 conv's input weights by 1/1000 leaves the fp32
function unchanged (ReLU is positively homogeneous), but the activation's range grows 1000-fold,
so per-tensor int8 of it loses the other channels. The layer that must go back to float is known
in advance: the conv that reads the outlier.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import read_manifest, run_zoo
from digits_model import image_folder, load_split

MARGIN_PP = 1.0  # int8 top-1 within this many points of fp32 on held-out digits, calibrated on real ones
SCALE = 1000.0


def _outlier_checkpoint(digits, blocks, path: Path) -> Path:
    import torch

    state = torch.load(digits.checkpoint, weights_only=True)
    for block in blocks:
        state[f"{block}.bn2.weight"][0] *= SCALE
        state[f"{block}.bn2.bias"][0] *= SCALE
        state[f"{block}.conv3.weight"][:, 0] /= SCALE
    torch.save(state, path)
    return path


def _convert(digits, cwd: Path, target: str, weights: Path, *extra: str):
    return run_zoo("convert", f"model={digits.variant}", f"source={digits.source}", f"weights={weights}",
                   f"target={target}", "precision=int8", f"calib_data={digits.calib}", f"data={digits.val}",
                   "out_dir=out", "progress=false", *extra, cwd=cwd, env={"ZOO_CONF": str(digits.conf)})


def _folder(digits, cwd: Path, target: str) -> Path:
    return cwd / "out" / digits.variant / digits.source / digits.tag / f"{target}-int8"


def _top1_of_artifact(folder: Path, target: str, digits) -> float:
    """The built file run by its own runtime here, on the held-out PNGs: independent of the gate's code."""
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry(digits.conf)
    v = resolve_variant(reg, digits.variant)
    x, y = load_split(image_folder(digits.val), effective_input(v, select_weights(reg, v, digits.source, digits.tag)))
    if target == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
        scores = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    else:
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        scores = compiled.create_infer_request().infer({0: x})[0]
    return float(100.0 * (np.argmax(scores, axis=1) == y).mean())


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_int8_top1_is_within_a_point_of_fp32_on_held_out_digits(digits, tmp_path, target):
    proc = _convert(digits, tmp_path, target, digits.checkpoint)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = _folder(digits, tmp_path, target)
    m = read_manifest(folder)
    acc = m["validation"]["accuracy_control"]
    assert acc["subset"]["images"] == len(image_folder(digits.val)) and acc["subset"]["classes"] == 10
    assert acc["fp32_top1"] == pytest.approx(digits.fp32_top1, abs=0.3)  # torch measured it in the fixture
    assert acc["int8_top1"] == pytest.approx(_top1_of_artifact(folder, target, digits), abs=1e-9)
    assert acc["int8_top1"] >= acc["fp32_top1"] - MARGIN_PP
    assert acc["passed"] is None and not acc["restored"]  # measured, not gated: no max_drop given
    assert m["calibration"]["source"] == "folder" and m["calibration"]["classes"] == 10
    assert "int8 top-1 fp32" in proc.stdout and "measured" in proc.stdout


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_a_tight_max_drop_returns_the_outlier_layer_to_float(digits, tmp_path, target):
    weights = _outlier_checkpoint(digits, ["layer2.0"], tmp_path / "outlier.pth")
    proc = _convert(digits, tmp_path, target, weights, "max_drop=0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = _folder(digits, tmp_path, target)
    m = read_manifest(folder)
    acc = m["validation"]["accuracy_control"]
    assert acc["fp32_top1"] == pytest.approx(digits.fp32_top1, abs=0.3)  # the outlier changes no fp32 output
    assert acc["fp32_top1"] - acc["first_int8_top1"] > 0.5 and acc["restored"]  # plain int8 broke it
    assert acc["drop_pp"] <= 0.5 and acc["passed"] is True and m["status"] == "passed"
    assert any("layer2.0/conv3" in name for name in acc["float_layers"]), acc["float_layers"]
    assert len(acc["float_layers"]) <= 3  # a few layers, not the whole model
    assert acc["int8_top1"] == pytest.approx(_top1_of_artifact(folder, target, digits), abs=1e-9)
    assert "quantize_with_accuracy_control" in m["calibration"]["method"]


def test_a_max_drop_that_cannot_be_met_fails_and_keeps_the_artifact_marked_failed(digits, tmp_path):
    weights = _outlier_checkpoint(digits, ["layer2.0", "layer3.0"], tmp_path / "two-outliers.pth")
    proc = _convert(digits, tmp_path, "onnx", weights, "max_drop=0.5", "max_float_layers=1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.strip().count("\n") == 0 and "max_drop=0.5" in proc.stderr and "Traceback" not in proc.stderr
    folder = _folder(digits, tmp_path, "onnx")
    m = read_manifest(folder)
    acc = m["validation"]["accuracy_control"]
    assert m["status"] == "failed" and acc["passed"] is False and acc["drop_pp"] > 0.5
    assert len(acc["float_layers"]) == 1  # the bound held
    assert (folder / "model.onnx").is_file()  # kept for inspection, marked failed
    assert "FAILED" in proc.stdout


@pytest.mark.parametrize("args, needle", [
    (["max_drop=-1", "data=."], "max_drop=-1: give the largest top-1 drop"),
    (["max_drop=abc", "data=."], "max_drop=abc: expected a number; give the largest top-1 drop"),
    (["max_drop=0.5"], "max_drop= needs data=DIR"),
    (["max_drop=0.5", "data=.", "precision=fp32"], "max_drop= is for int8"),
    (["max_drop=0.5", "data=.", "target=vacc"], "target vacc cannot return int8 layers to float"),
    (["max_drop=0.5", "data=no-such-folder"], "data=no-such-folder: no such folder"),
    (["max_drop=0.5", "data=.", "max_float_layers=0"], "max_float_layers=0: give how many layers"),
])
def test_bad_accuracy_input_is_one_line_and_exit_2(tmp_path, args, needle):
    proc = run_zoo("convert", "model=resnext50_32x4d", "weights=random", "precision=int8", "out_dir=out", *args,
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


def test_openvino_int8_calibrates_on_a_zoo_calib_set(digits, tmp_path):
    env = {"ZOO_CONF": str(digits.conf)}
    made = run_zoo("calib", f"data={digits.calib}", "target=openvino", f"model={digits.variant}", "n=20",
                   "out_dir=out", "progress=false", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr[-2000:]
    npy = sorted((tmp_path / "out" / "calib" / "openvino" / "npy").glob("*.npy"))
    assert len(npy) == 20
    proc = run_zoo("convert", f"model={digits.variant}", f"weights={digits.checkpoint}", "target=openvino",
                   "precision=int8", "calib_data=out/calib/openvino", "out_dir=out", "progress=false",
                   cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cal = read_manifest(_folder(digits, tmp_path, "openvino"))["calibration"]
    # every file of the set was used, and its 20 images cover the 10 digit folders (n >= classes)
    assert (cal["source"], cal["images"], cal["classes"]) == ("folder", 20, 10)
    assert "20 images from openvino/, 10 classes" in proc.stdout
