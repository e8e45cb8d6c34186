"""Accuracy with a real network, and the verdict against published numbers.

The network is torchvision's ResNeXt-50 32x4d, freshly initialised with a fixed seed; the images
are labelled with the network's own top-1 (computed one image at a time, independently of
``evaluate``), so a correct evaluation must score exactly 100%, and each deliberately wrong label
must cost exactly one image.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from zoo.data import Sample, open_dataset
from zoo.errors import UserError
from zoo.evaluate import evaluate
from zoo.preprocess import preprocess
from zoo.scoring import DEFAULT_TOLERANCE_PP, judge, sampling_error_pp

N_IMAGES = 12


@pytest.fixture(scope="module")
def spec():
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    return effective_input(v, select_weights(reg, v, "torchvision", "IMAGENET1K_V1"))


@pytest.fixture(scope="module")
def model():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnext50_32x4d(weights=None).eval()


@pytest.fixture(scope="module")
def run(model):
    import torch

    def scores(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return scores


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, spec, run):
    """A val_map.txt folder of JPEGs and PNGs labelled by the model's own top-1, plus two broken files."""
    from zoo.validators.inputs import generated_images

    d = tmp_path_factory.mktemp("val")
    names, labels, margins = [], [], []
    for i, img in enumerate(generated_images(N_IMAGES, seed=5)):
        name = f"ILSVRC2012_val_{i + 1:08d}." + ("JPEG" if i % 3 else "png")
        img.save(d / name, **({"format": "JPEG", "quality": 92} if i % 3 else {"format": "PNG"}))
        with Image.open(d / name) as im:  # the plain PIL path, not the code under test
            logits = run(preprocess(im.convert("RGB"), spec)[None])[0]
        top2 = np.sort(logits)[-2:]
        names.append(name)
        labels.append(int(logits.argmax()))
        margins.append(float(top2[1] - top2[0]))
    (d / "ILSVRC2012_val_00000013.JPEG").write_bytes((d / names[1]).read_bytes()[:2000])  # truncated
    (d / "ILSVRC2012_val_00000014.JPEG").write_bytes(b"")
    lines = [f"{n}\t{lab}" for n, lab in zip(names, labels)] + [
        "ILSVRC2012_val_00000013.JPEG\t0", "ILSVRC2012_val_00000014.JPEG\t0"]
    (d / "val_map.txt").write_text("\n".join(lines) + "\n")
    # Batching changes logits by ~1e-7 here; a top-1 this close to a tie would make the test a coin toss.
    assert min(margins) > 1e-5, margins
    return d, labels


def _expected_predictions(labels):
    return labels + [-1, -1]


def test_own_predictions_as_labels_score_100_in_process(labelled, spec, run):
    d, labels = labelled
    ds = open_dataset(d)
    assert len(ds.samples) == N_IMAGES + 2
    res = evaluate(ds.samples, spec, run, batch=5, workers=0, progress=False)
    assert (res.n_requested, res.n_evaluated) == (14, 12)
    assert (res.top1, res.top5) == (100.0, 100.0)
    assert (res.correct1, res.correct5) == (12, 12)
    assert res.skipped == {"truncated": 1, "empty file": 1}
    assert res.predictions == _expected_predictions(labels)
    assert res.seconds > 0 and res.images_per_second == pytest.approx(12 / res.seconds)


def test_worker_processes_give_identical_results_in_order(labelled, spec, run):
    d, labels = labelled
    samples = open_dataset(d).samples
    res = evaluate(samples, spec, run, batch=5, workers=2, progress=False)
    assert (res.top1, res.top5, res.n_evaluated) == (100.0, 100.0, 12)
    assert res.skipped == {"truncated": 1, "empty file": 1}
    # The predictions land on the right sample only if the stream kept the dataset's order.
    assert res.predictions == _expected_predictions(labels)


def test_three_wrong_labels_cost_exactly_a_quarter(labelled, spec, run, capsys):
    d, labels = labelled
    samples = [s for s in open_dataset(d).samples if s.path.stat().st_size > 2000]  # the 12 good images
    wrong = {2, 7, 11}
    shifted = [Sample(s.path, (s.label + 1) % 1000 if i in wrong else s.label) for i, s in enumerate(samples)]
    res = evaluate(shifted, spec, run, batch=32, workers=0, progress=True)
    assert res.top1 == 75.0 and res.correct1 == 9
    assert res.skipped == {}
    assert res.predictions == labels  # the predictions do not depend on the labels
    err = capsys.readouterr().err
    assert "12/12" in err and "top-1 75.00%" in err  # the bar went to stderr with the running top-1


def test_run_returning_the_wrong_shape_is_an_error(labelled, spec):
    d, _ = labelled
    samples = open_dataset(d).samples[:3]
    with pytest.raises(ValueError, match=r"expected \(3, classes\)"):
        evaluate(samples, spec, lambda x: np.zeros(len(x)), batch=8, workers=0, progress=False)


def test_nothing_decodable_gives_no_accuracy(tmp_path, spec):
    (tmp_path / "a.jpg").write_bytes(b"")
    res = evaluate([Sample(tmp_path / "a.jpg", 0)], spec, lambda x: 1 / 0, workers=0, progress=False)
    assert (res.n_evaluated, res.top1, res.top5, res.skipped) == (0, None, None, {"empty file": 1})
    assert "predictions" not in res.as_dict() and res.as_dict()["skipped"] == {"empty file": 1}


# -- judge --------------------------------------------------------------------------------------

def test_judge_within_and_outside_the_default_tolerance():
    ok = judge(77.40, 77.618, "fp32", 50000, 50000)
    assert ok["passed"] is True and ok["subset"] is False
    assert ok["tolerance_pp"] == 0.3 and ok["sampling_widening_pp"] == 0.0
    assert ok["difference_pp"] == pytest.approx(-0.218)
    assert "0.218 pp below published 77.618%" in ok["reason"] and "within" in ok["reason"]
    bad = judge(77.20, 77.618, "fp16", 50000, 50000)
    assert bad["passed"] is False and "outside the tolerance of 0.30 pp" in bad["reason"]
    assert judge(77.918, 77.618, "fp32", 50000, 50000)["passed"] is True  # exactly at the edge
    assert judge(77.919, 77.618, "fp32", 50000, 50000)["passed"] is False


def test_judge_int8_default_is_one_point_and_a_user_tolerance_overrides():
    assert DEFAULT_TOLERANCE_PP["int8"] == 1.0
    v = judge(75.1, 76.0, "int8", 50000, 50000)
    assert v["passed"] is True and v["tolerance_pp"] == 1.0 and v["tolerance_from"] == "default for int8"
    assert judge(74.9, 76.0, "int8", 50000, 50000)["passed"] is False
    user = judge(74.9, 76.0, "int8", 50000, 50000, tolerance_pp=1.5)
    assert user["passed"] is True and user["tolerance_pp"] == 1.5 and user["tolerance_from"] == "user"
    assert judge(77.5, 77.618, "fp32", 50000, 50000, tolerance_pp=0.1)["passed"] is False
    with pytest.raises(UserError, match="no default tolerance for precision 'bf16'"):
        judge(77.5, 77.618, "bf16", 100, 100)
    assert judge(77.5, 77.618, "bf16", 100, 100, tolerance_pp=0.5)["passed"] is True


def test_judge_on_a_subset_widens_by_the_sampling_error():
    # p = 0.77618, n = 1000: 1.96 * sqrt(0.77618 * 0.22382 / 1000) * 100 = 2.5834 pp
    v = judge(75.5, 77.618, "fp32", 1000, 50000)
    assert v["subset"] is True
    assert v["sampling_widening_pp"] == pytest.approx(2.5834, abs=1e-4)
    assert v["sampling_widening_pp"] == pytest.approx(1.96 * math.sqrt(0.77618 * 0.22382 / 1000) * 100)
    assert v["tolerance_pp"] == pytest.approx(0.3 + 2.5834, abs=1e-4)
    assert v["passed"] is True  # 2.118 pp off: a fail on the full set, a pass on 1000 images
    assert "2.88 pp = 0.30 pp (default for fp32) + 2.58 pp sampling error of 1000 of 50000 images" in v["reason"]
    assert judge(74.5, 77.618, "fp32", 1000, 50000)["passed"] is False  # 3.118 pp is too far even so
    # 10000 images: 1.96 * sqrt(0.81198 * 0.18802 / 10000) * 100 = 0.7658 pp
    assert sampling_error_pp(81.198, 10000) == pytest.approx(0.7658, abs=1e-4)
    # n_total unknown: no basis to call it a subset
    assert judge(75.5, 77.618, "fp32", 1000, None)["subset"] is False


def test_judge_without_a_published_figure_cannot_pass_or_fail():
    v = judge(77.5, None, "fp32", 50000, 50000)
    assert v["passed"] is None and v["reason"] == "no published top-1 for this checkpoint to compare with"
    v = judge(None, 77.618, "fp32", 0, 50000)
    assert v["passed"] is None and v["reason"] == "no image was evaluated"
