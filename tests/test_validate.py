"""`zoo validate` end to end: artifacts and the source model scored on a generated set labelled by
the source model's own predictions (so the fp32 source scores 100% by construction and every
artifact's top-1 / top-5 is a real measurement), golden outputs, and the error paths."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import manifest_of, run_zoo

MODEL, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"


def _zoo(out_dir, *args):
    return run_zoo(*args, f"model={MODEL}", f"source={SOURCE}", "weights=random", f"out_dir={out_dir}", "progress=false")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    for args in (["target=onnx", "golden=true"], ["target=openvino"], ["target=onnx", "precision=int8"]):
        proc = _zoo(out, "convert", *args)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def val_dir(tmp_path_factory):
    """A flat ILSVRC-style folder with val_map.txt, labelled by the source model (weights=random, seed 0)."""
    import torch

    from zoo.converters.sources import get_adapter
    from zoo.preprocess import preprocess
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights
    from zoo.validators.inputs import generated_images

    reg = load_registry()
    v = resolve_variant(reg, MODEL)
    w = select_weights(reg, v, SOURCE, TAG)
    adapter = get_adapter(SOURCE)
    model = adapter.fresh(v, w, 0)  # what weights=random seed=0 builds
    root = tmp_path_factory.mktemp("val")
    lines = []
    for i, img in enumerate(generated_images(12, seed=7)):
        name = f"ILSVRC2012_val_{i + 1:08d}." + ("JPEG" if i % 3 else "png")
        img.save(root / name)
        from PIL import Image

        with Image.open(root / name) as saved:
            x = preprocess(saved, effective_input(v, w))[None]
        with torch.no_grad():
            lines.append(f"{name}\t{int(adapter.run(model, x).argmax())}")
    (root / "val_map.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("args, folder", [(["target=onnx"], "onnx"), (["target=openvino"], "openvino")])
def test_fp32_artifacts_score_100_on_the_source_models_labels(built, val_dir, args, folder):
    proc = _zoo(built, "validate", *args, f"data={val_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "top-1 100.000  top-5 100.000  on 12 images" in proc.stdout
    acc = manifest_of(built, MODEL, SOURCE, TAG, folder)["accuracy"]
    assert acc["layout"] == "val_map" and acc["result"]["top1"] == 100.0
    assert acc["verdict"]["passed"] is None and "weights=random" in acc["verdict"]["reason"]


def test_the_source_model_itself_scores_100(built, val_dir):
    proc = _zoo(built, "validate", "source_model=true", f"data={val_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "top-1 100.000" in proc.stdout and "(source model)" in proc.stdout


def test_int8_accuracy_is_measured_on_a_subset(built, val_dir):
    proc = _zoo(built, "validate", "target=onnx", "precision=int8", f"data={val_dir}", "limit=8")
    assert proc.returncode == 0, proc.stderr[-2000:]
    acc = manifest_of(built, MODEL, SOURCE, TAG, "onnx-int8")["accuracy"]
    r = acc["result"]
    assert r["n_evaluated"] == 8 and "(a subset of 12)" in proc.stdout
    assert r["top1"] == 100.0 * r["correct1"] / 8 and r["top5"] >= r["top1"]


def test_golden_outputs_check_the_artifact_and_catch_tampering(built):
    proc = _zoo(built, "validate", "target=onnx", "golden=true")
    assert proc.returncode == 0, proc.stderr[-2000:]
    gold = manifest_of(built, MODEL, SOURCE, TAG, "onnx")["golden"]
    assert gold["passed"] and set(gold["sets"]) == {"random", "images"}
    folder = built / MODEL / SOURCE / TAG / "onnx"
    data = dict(np.load(folder / "golden.npz"))
    data[next(iter(data))] = data[next(iter(data))] + 1.0
    np.savez(folder / "golden.npz", **data)
    bad = _zoo(built, "validate", "target=onnx", "golden=true")
    assert bad.returncode == 2 and "golden" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("args, needle", [
    (["target=onnx"], "validate needs data=/path/to/val"),
    (["target=onnx", "data=/no/such/folder"], "data=/no/such/folder: no such folder"),
    (["target=vacc", "golden=true"], "no artifact at"),
    (["target=mindir", "golden=true"], "python -m zoo convert model=resnext50_32x4d source=torchvision"),
])
def test_validate_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    proc = _zoo(tmp_path, "validate", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr and "Traceback" not in proc.stderr


def test_an_ImageFolder_with_too_few_classes_is_refused(built, tmp_path):
    from zoo.validators.inputs import generated_images

    for cls in ("n01440764", "n01443537"):
        (tmp_path / cls).mkdir()
        generated_images(1, seed=1)[0].save(tmp_path / cls / "a.JPEG")
    proc = _zoo(built, "validate", "target=onnx", f"data={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert json.loads((built / MODEL / SOURCE / TAG / "onnx" / "manifest.json").read_text())["status"] == "passed"
