"""`zoo calib` through the CLI: every target's format on disk, class coverage, seeded determinism,
the ONNX Runtime reader feeding quantize_static, and the error paths (exit 2, one line, nothing written)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from conftest import run_zoo
from zoo.calib_formats import NpyCalibrationReader
from zoo.preprocess import preprocess, resize_crop
from zoo.registry.loader import load_registry
from zoo.registry.query import effective_input, resolve_variant, select_weights

CLASSES, PER_CLASS = 12, 4
SIDE = 224
RGBCHW_BYTES = 3 * SIDE * SIDE * 4  # hb_mapper's raw float32 1x3x224x224


def _picture(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A gradient with noise: smooth enough that JPEG keeps it, varied enough that crops differ."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, np.full_like(xx, rng.random())], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """An ImageFolder tree: 12 classes x 4 images of varied sizes, as RGB JPEG, PNG and greyscale JPEG."""
    root = tmp_path_factory.mktemp("imagefolder")
    rng = np.random.default_rng(7)
    for c in range(CLASSES):
        folder = root / f"n{c:08d}"
        folder.mkdir()
        for i in range(PER_CLASS):
            img = Image.fromarray(_picture(rng, int(rng.integers(48, 96)), int(rng.integers(48, 96))))
            if i == 0:
                img.save(folder / f"img{i}.png")
            elif i == 1 and c % 3 == 0:
                img.convert("L").save(folder / f"img{i}.jpg", quality=90)
            else:
                img.save(folder / f"img{i}.JPEG", quality=90)
        (folder / "notes.txt").write_text("not an image\n")
    return root


def calib(tree: Path, out: Path, *args: str):
    r = run_zoo("calib", f"data={tree}", f"out_dir={out}", *args, timeout=300)
    assert r.returncode == 0, r.stderr
    return r, json.loads((out / "calib" / _target(args) / "manifest.json").read_text())


def _target(args) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith("target="))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_of(variant: str, source: str):
    reg = load_registry()
    v = resolve_variant(reg, variant)
    return effective_input(v, select_weights(reg, v, source, None))


def check_manifest_files(m: dict, set_folder: Path, suffix: str) -> None:
    """The manifest lists exactly the data files on disk, with their true sizes and sha256."""
    data = set_folder / m["format"]["folder"]
    on_disk = sorted(p.name for p in data.glob(f"*{suffix}"))
    assert sorted(Path(f["name"]).name for f in m["files"]) == on_disk
    for f in m["files"]:
        p = set_folder / f["name"]
        assert p.stat().st_size == f["size"] and sha256(p) == f["sha256"]
        assert f["class"] == Path(f["source"]).parent.as_posix()


def test_vacc_set_covers_every_class_and_copies_rgb_jpegs_byte_for_byte(tree, tmp_path):
    r, m = calib(tree, tmp_path, "target=vacc", "n=12")
    folder = tmp_path / "calib" / "vacc"
    assert m["n"] == 12 and m["n_requested"] == 12 and m["seed"] == 0 and m["images_available"] == 48
    assert m["classes"] == {"total": 12, "covered": 12, "all_covered": True,
                            "names": [f"n{c:08d}" for c in range(CLASSES)]}
    assert "12/12 represented" in r.stdout
    check_manifest_files(m, folder, ".JPEG")
    listed = (folder / "calib" / "filelist.txt").read_text().split()
    assert listed == [Path(f["name"]).name for f in m["files"]] == [f"{i:05d}.JPEG" for i in range(12)]
    kinds = set()
    for f in m["files"]:
        src, dst = tree / f["source"], folder / f["name"]
        with Image.open(src) as s, Image.open(dst) as d:
            assert (d.format, d.mode, d.size) == ("JPEG", "RGB", s.size)
            if s.format == "JPEG" and s.mode == "RGB":
                assert f["from"] == "copied" and dst.read_bytes() == src.read_bytes()
            else:  # PNG and greyscale JPEG: re-encoded as the RGB JPEG vamc's sampler takes
                assert f["from"] == f"re-encoded from {s.format} {s.mode}"
                diff = np.abs(np.asarray(d, np.int16) - np.asarray(s.convert("RGB"), np.int16))
                assert diff.mean() < 4  # the same picture, not just a file of the right size
            kinds.add(f["from"].split()[0])
    assert kinds == {"copied", "re-encoded"}  # both paths ran


def test_seeded_determinism_and_worker_processes_change_nothing(tree, tmp_path):
    _, a = calib(tree, tmp_path / "a", "target=vacc", "n=12", "seed=3")
    _, b = calib(tree, tmp_path / "b", "target=vacc", "n=12", "seed=3")
    _, c = calib(tree, tmp_path / "c", "target=vacc", "n=12", "seed=4")
    picks = lambda m: [(f["source"], f["sha256"]) for f in m["files"]]  # noqa: E731
    assert picks(a) == picks(b)
    assert [f["source"] for f in a["files"]] != [f["source"] for f in c["files"]]
    assert c["classes"]["all_covered"]
    # The default n is the target yaml's (vacc: 50); the data holds 48, so all are written and it says so.
    r1, one = calib(tree, tmp_path / "w1", "target=vacc", "workers=1")
    r2, two = calib(tree, tmp_path / "w2", "target=vacc", "workers=2")  # 48 images: decoded in worker processes
    assert one["n_requested"] == 50 and one["n"] == 48
    assert "data holds 48 images" in r1.stdout
    assert picks(one) == picks(two)
    every_image = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("img*"))
    assert sorted(f["source"] for f in one["files"]) == every_image


def test_fewer_images_than_classes_says_not_all_are_represented(tree, tmp_path):
    r, m = calib(tree, tmp_path, "target=vacc", "n=5")
    assert m["n"] == 5 and m["classes"]["covered"] == 5 and not m["classes"]["all_covered"]
    assert len({f["class"] for f in m["files"]}) == 5  # five different classes, not five of one
    assert "not every class is represented" in r.stdout and "n>=12" in r.stdout


def test_bpu_rgbchw_files_are_raw_float32_chw_0_255_resize_crops(tree, tmp_path):
    r, m = calib(tree, tmp_path, "target=bpu", "model=resnext50_32x4d", "n=12")
    folder = tmp_path / "calib" / "bpu"
    assert (m["variant"], m["source"], m["tag"]) == ("resnext50_32x4d", "torchvision", "IMAGENET1K_V1")
    assert m["format"]["shape"] == [3, SIDE, SIDE] and m["format"]["normalised"] is False
    data = folder / "calibration_data_rgb_f32"
    # hb_mapper reads every file of cal_data_dir: nothing but the .rgbchw files may be there
    assert sorted(p.name for p in data.iterdir()) == [f"{i:05d}.rgbchw" for i in range(12)]
    check_manifest_files(m, folder, ".rgbchw")
    assert m["classes"]["all_covered"]
    spec = spec_of("resnext50_32x4d", "torchvision")
    for f in m["files"]:
        path = folder / f["name"]
        assert path.stat().st_size == RGBCHW_BYTES
        back = np.fromfile(path, dtype=np.float32).reshape(3, SIDE, SIDE)
        with Image.open(tree / f["source"]) as im:
            want = np.asarray(resize_crop(im, spec), np.float32).transpose(2, 0, 1)
        assert np.array_equal(back, want)
        assert back.min() >= 0 and 1 < back.max() <= 255  # pixels, not normalised values
    assert f"cal_data_dir {data}" in r.stdout


@pytest.mark.parametrize("target, source, args, n", [
    ("onnx", "timm", [], 32),           # n from the yaml's int8.calib_images; timm: bicubic, crop_pct 0.95
    ("ixrt", "torchvision", ["n=12"], 12),
])
def test_npy_files_are_the_registry_preprocessing(tree, tmp_path, target, source, args, n):
    _, m = calib(tree, tmp_path, f"target={target}", "model=resnext50_32x4d", f"source={source}", *args)
    folder = tmp_path / "calib" / target
    assert m["n"] == n and m["classes"]["all_covered"]
    if not args:
        assert m["n_requested"] == 32
    check_manifest_files(m, folder, ".npy")
    assert (folder / "npy" / "filelist.txt").read_text().split() == [f"{i:05d}.npy" for i in range(n)]
    spec = spec_of("resnext50_32x4d", source)
    assert m["input"]["resize"] == spec.resize_short() and m["input"]["interpolation"] == spec.interpolation.value
    header = 128  # np.save's version-1 header for a (3, 224, 224) float32 array
    for f in m["files"]:
        path = folder / f["name"]
        assert path.stat().st_size == header + RGBCHW_BYTES
        x = np.load(path)
        assert x.dtype == np.float32 and x.shape == (3, SIDE, SIDE)
        with Image.open(tree / f["source"]) as im:
            assert np.array_equal(x, preprocess(im, spec))


def _tiny_conv(path: Path) -> None:
    """A one-Conv ONNX model with a dynamic batch: enough for quantize_static to calibrate its input."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    node = helper.make_node("Conv", ["input", "w", "b"], ["output"], pads=[1, 1, 1, 1])
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIDE, SIDE])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 4, SIDE, SIDE])
    graph = helper.make_graph([node], "tiny", [x], [y], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_npy_reader_feeds_quantize_static(tree, tmp_path):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    calib(tree, tmp_path, "target=onnx", "model=resnext50_32x4d", "n=12")
    folder = tmp_path / "calib" / "onnx"
    files = sorted((folder / "npy").glob("*.npy"))
    stacked = np.stack([np.load(f) for f in files])

    reader = NpyCalibrationReader(folder, "input", batch=5)  # the set folder or its npy/ folder both work
    assert len(reader) == 3
    batches = [reader.get_next() for _ in range(3)]
    assert reader.get_next() is None
    assert [b["input"].shape for b in batches] == [(5, 3, SIDE, SIDE)] * 3
    assert np.array_equal(batches[0]["input"], stacked[:5])
    assert np.array_equal(batches[2]["input"], stacked[[10, 11, 0, 1, 2]])  # the last batch wraps round
    reader.rewind()
    assert np.array_equal(reader.get_next()["input"], stacked[:5])
    reader.set_range(1, 2)
    assert np.array_equal(reader.get_next()["input"], stacked[5:10]) and reader.get_next() is None

    src, dst = tmp_path / "tiny.onnx", tmp_path / "tiny.int8.onnx"
    _tiny_conv(src)
    reader = NpyCalibrationReader(folder / "npy", "input", batch=4)
    quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "CalibStridedMinMax": 1})
    model = onnx.load(str(dst))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q_input = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input")
    scale = float(inits[q_input.input[1]])
    # Symmetric int8 MinMax: the input's scale is max |x| over every calibration file / 127.
    assert scale == pytest.approx(float(np.abs(stacked).max()) / 127, rel=1e-6)


def _one_line_error(r, *words: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture()
def empty_dir(tmp_path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "readme.txt").write_text("no images here\n")
    return d


@pytest.mark.parametrize("data, args, words", [
    ("missing", ["target=vacc"], ["no such folder"]),
    ("empty", ["target=vacc"], ["no images found"]),
    ("tree", ["target=mindir"], ["mindir has no calibration format"]),
    ("tree", ["target=bpu"], ["model="]),
    ("tree", ["target=vacc", "n=0"], ["n=0"]),
    ("tree", ["target=onnx", "model=resnext50_32x4d", "workers=0"], ["workers=0"]),
])
def test_errors_are_one_line_and_write_nothing(tree, empty_dir, tmp_path, data, args, words):
    root = {"missing": tmp_path / "nope", "empty": empty_dir, "tree": tree}[data]
    out = tmp_path / "out"
    r = run_zoo("calib", f"data={root}", f"out_dir={out}", *args)
    _one_line_error(r, *words)
    assert not out.exists()


def test_an_unreadable_image_fails_cleanly_and_keeps_the_previous_set(tmp_path):
    flat = tmp_path / "flat"  # a flat folder of images: one class, the folder itself
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 50, 3), 40 * i, np.uint8)).save(flat / f"{i}.png")
    out = tmp_path / "out"
    _, before = calib(flat, out, "target=vacc", "n=3")
    assert before["n"] == 3 and before["classes"]["names"] == ["."] and before["classes"]["all_covered"]
    (flat / "3.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    r = run_zoo("calib", f"data={flat}", f"out_dir={out}", "target=vacc", "n=4")
    _one_line_error(r, "3.jpg", "cannot read")
    after = json.loads((out / "calib" / "vacc" / "manifest.json").read_text())
    assert after == before  # the earlier set is still the one in place
    assert sorted(p.name for p in (out / "calib").iterdir()) == ["vacc"]  # no staging folder left behind
    assert len(list((out / "calib" / "vacc" / "calib").glob("*.JPEG"))) == 3


def test_rgbchw_refuses_an_input_that_is_not_rgb_nchw(tree, tmp_path):
    import dataclasses

    from zoo.calib_formats import build_set, calibration_format, sample_folder
    from zoo.errors import UserError
    from zoo.registry.schema import ColorOrder

    bgr = dataclasses.replace(spec_of("resnext50_32x4d", "torchvision"), color=ColorOrder.BGR)
    with pytest.raises(UserError, match="RGB NCHW"):
        build_set(sample_folder(tree, 2, 0), tmp_path / "set", "bpu", calibration_format("bpu"), bgr, 0, 2)
    assert not any(tmp_path.iterdir())
