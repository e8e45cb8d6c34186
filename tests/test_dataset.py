"""Evaluation data on disk: the three layouts, label files, decoding of awkward images, subsets.

Every image here is a real file written with PIL; the bad ones are made the way they occur in
the wild (a JPEG cut short, a zero-byte file, text saved under an image name).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.calibration import stratified_sample
from zoo.data import Sample, check_labels, load_rgb, open_dataset, stratified_subset
from zoo.data.dataset import Dataset
from zoo.errors import UserError

WNIDS = ["n01443537", "n01440764", "n01484850"]  # created out of order: labels follow sorted names


def _noise(w: int, h: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _jpeg(path: Path, w: int = 64, h: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(w, h, seed)).save(path, "JPEG", quality=90)
    return path


def _val_names(n: int):
    return [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, n + 1)]


def _flat_val(folder: Path, labels, label_name: str, sep: str) -> Path:
    """A flat folder of ILSVRC2012_val_*.JPEG and a label file with ``sep`` between name and label."""
    names = _val_names(len(labels))
    for i, name in enumerate(names):
        _jpeg(folder / name, 40 + i, 30 + 2 * i, seed=i)
    (folder / label_name).write_text("".join(f"{n}{sep}{lab}\n" for n, lab in zip(names, labels)))
    return folder


# -- layouts ----------------------------------------------------------------------------------

def test_imagefolder_labels_are_sorted_folder_indices_as_torchvision_has_them(tmp_path):
    from torchvision.datasets import ImageFolder

    for k, wnid in enumerate(WNIDS):
        for j in range(k + 2):
            _jpeg(tmp_path / wnid / f"img_{j}.JPEG", 50 + j, 40, seed=10 * k + j)
    _jpeg(tmp_path / WNIDS[0] / "nested" / "deep.png", seed=99)  # torchvision walks sub-folders too
    (tmp_path / WNIDS[1] / "notes.txt").write_text("not an image")

    ds = open_dataset(tmp_path)

    assert ds.layout == "imagefolder" and ds.missing == [] and ds.label_file is None
    assert ds.classes == sorted(WNIDS) == ["n01440764", "n01443537", "n01484850"]
    by_label = Counter(s.label for s in ds.samples)
    assert by_label == {0: 3, 1: 2 + 1, 2: 4}  # n01443537 (label 1) has 2 + the nested one
    tv = ImageFolder(str(tmp_path))
    assert [(str(s.path), s.label) for s in ds.samples] == tv.samples


def test_imagefolder_skips_hidden_folders(tmp_path):
    for wnid in WNIDS:
        _jpeg(tmp_path / wnid / "a.jpg")
    _jpeg(tmp_path / ".ipynb_checkpoints" / "a.jpg")  # would shift every label by one if counted
    ds = open_dataset(tmp_path)
    assert ds.classes == sorted(WNIDS)
    assert [s.label for s in ds.samples] == [0, 1, 2]


def test_val_label_txt_space_separated(tmp_path):
    labels = [65, 970, 230, 809, 516, 57]
    _flat_val(tmp_path, labels, "val_label.txt", " ")
    ds = open_dataset(tmp_path)
    assert (ds.layout, ds.classes, ds.missing) == ("val_label", None, [])
    assert ds.label_file == tmp_path / "val_label.txt"
    assert [(s.path.name, s.label) for s in ds.samples] == list(zip(_val_names(6), labels))


def test_val_map_txt_tab_separated(tmp_path):
    labels = [1, 0, 999, 3]
    _flat_val(tmp_path, labels, "val_map.txt", "\t")
    ds = open_dataset(tmp_path)
    assert ds.layout == "val_map"
    assert [(s.path.name, s.label) for s in ds.samples] == list(zip(_val_names(4), labels))


def test_format_is_told_by_the_separator_not_the_file_name(tmp_path):
    _flat_val(tmp_path / "a", [5, 6], "val_map.txt", " ")  # named val_map, written with spaces
    assert open_dataset(tmp_path / "a").layout == "val_label"
    _flat_val(tmp_path / "b", [5, 6], "labels.txt", "\t")  # any name, given explicitly
    ds = open_dataset(tmp_path / "b", labels=tmp_path / "b" / "labels.txt")
    assert ds.layout == "val_map" and [s.label for s in ds.samples] == [5, 6]


def test_explicit_label_file_elsewhere_wins_over_a_folder_tree(tmp_path):
    for wnid in WNIDS:
        _jpeg(tmp_path / "images" / wnid / "x.jpg")
    labels = tmp_path / "my_labels.txt"
    labels.write_text(f"{WNIDS[0]}/x.jpg 7\n{WNIDS[2]}/x.jpg 8\n")
    ds = open_dataset(tmp_path / "images", labels=labels)
    assert ds.layout == "val_label" and ds.label_file == labels
    assert [(s.path.parent.name, s.label) for s in ds.samples] == [(WNIDS[0], 7), (WNIDS[2], 8)]


def test_label_file_beside_the_val_folder(tmp_path):
    """The ImageNet/{val/, val_label.txt} layout, opened as ImageNet/val or as ImageNet."""
    labels = [3, 1, 4]
    _flat_val(tmp_path / "val", labels, "val_label.txt", " ")
    (tmp_path / "val" / "val_label.txt").rename(tmp_path / "val_label.txt")
    for root in (tmp_path / "val", tmp_path):
        ds = open_dataset(root)
        assert ds.image_dir == tmp_path / "val"
        assert [(s.path.name, s.label) for s in ds.samples] == list(zip(_val_names(3), labels))


def test_label_entries_without_an_image_are_counted_not_fatal(tmp_path):
    _flat_val(tmp_path, [0, 1, 2], "val_label.txt", " ")
    with open(tmp_path / "val_label.txt", "a") as f:
        f.write("\nILSVRC2012_val_00000099.JPEG 4\r\nILSVRC2012_val_00000100.JPEG 5\n\n")  # blank + CRLF lines
    ds = open_dataset(tmp_path)
    assert len(ds.samples) == 3
    assert ds.missing == ["ILSVRC2012_val_00000099.JPEG", "ILSVRC2012_val_00000100.JPEG"]


def test_unrecognised_layouts_are_one_line_user_errors(tmp_path):
    flat = tmp_path / "flat"
    _jpeg(flat / "ILSVRC2012_val_00000001.JPEG")  # images but nothing says their labels
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (flat, empty, tmp_path / "nope"):
        with pytest.raises(UserError) as e:
            open_dataset(root)
        msg = str(e.value)
        assert "\n" not in msg and "ImageFolder" in msg and "val_label.txt" in msg and "val_map.txt" in msg


def test_malformed_or_wrong_label_files_name_the_line(tmp_path):
    _flat_val(tmp_path, [0, 1], "val_label.txt", " ")
    (tmp_path / "val_label.txt").write_text("ILSVRC2012_val_00000001.JPEG 0\nILSVRC2012_val_00000002.JPEG tench\n")
    with pytest.raises(UserError, match=r"val_label.txt:2: expected '<name> <label>'"):
        open_dataset(tmp_path)
    (tmp_path / "val_label.txt").write_text("other_1.JPEG 0\nother_2.JPEG 1\n")
    with pytest.raises(UserError, match="none of its 2 images are in"):
        open_dataset(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(tmp_path, labels=tmp_path / "absent.txt")


def test_check_labels_refuses_partial_imagefolders_and_out_of_range_labels(tmp_path):
    for wnid in WNIDS:
        _jpeg(tmp_path / "tree" / wnid / "a.jpg")
    tree = open_dataset(tmp_path / "tree")
    check_labels(tree, 3)
    with pytest.raises(UserError, match="3 class folders but the model has 1000 classes"):
        check_labels(tree, 1000)
    _flat_val(tmp_path / "flat", [0, 999, 1000], "val_label.txt", " ")
    flat = open_dataset(tmp_path / "flat")
    with pytest.raises(UserError, match=r"labels \[1000\] are outside 0..999"):
        check_labels(flat, 1000)
    check_labels(flat, 1001)


# -- decoding ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    """One file per awkward case, with the pixels each should decode to (None: must be skipped)."""
    d = tmp_path_factory.mktemp("awkward")
    rgb = _noise(120, 80, 1)
    cases = {}

    Image.fromarray(rgb).convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=95)
    with Image.open(d / "cmyk.jpg") as im:
        assert im.mode == "CMYK"
        cases["cmyk.jpg"] = np.asarray(im.convert("RGB"))
    Image.fromarray(rgb).convert("L").save(d / "gray.jpg", "JPEG", quality=95)
    with Image.open(d / "gray.jpg") as im:
        cases["gray.jpg"] = np.repeat(np.asarray(im)[..., None], 3, axis=2)
    gray16 = np.linspace(0, 65535, 80 * 120).astype(np.uint16).reshape(80, 120)  # the full 16-bit range
    Image.fromarray(gray16).save(d / "gray16.png")
    cases["gray16.png"] = np.repeat(np.round(gray16 / 257.0).astype(np.uint8)[..., None], 3, axis=2)
    pal = Image.fromarray(rgb).convert("P")
    pal.save(d / "palette.png")
    cases["palette.png"] = np.asarray(pal.convert("RGB"))
    alpha = np.random.default_rng(2).integers(0, 256, (80, 120, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(d / "alpha.png")
    cases["alpha.png"] = rgb  # alpha dropped, colour untouched, as torchvision's loader does

    _jpeg(d / "ok.jpg", 120, 80, seed=3)
    (d / "truncated.jpg").write_bytes((d / "ok.jpg").read_bytes()[: len((d / "ok.jpg").read_bytes()) // 2])
    (d / "empty.JPEG").write_bytes(b"")
    (d / "text.JPEG").write_text("ILSVRC2012_val_00000001.JPEG 65\n")
    Image.fromarray(rgb).save(d / "corrupt.png")
    data = bytearray((d / "corrupt.png").read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = b"\xab" * 64  # a readable header, a damaged pixel stream
    (d / "corrupt.png").write_bytes(bytes(data))
    with Image.open(d / "ok.jpg") as im:
        cases["ok.jpg"] = np.asarray(im.convert("RGB"))
    cases.update({"truncated.jpg": None, "empty.JPEG": None, "text.JPEG": None, "corrupt.png": None})
    return d, cases


def test_awkward_modes_convert_to_the_right_rgb_pixels(awkward):
    d, cases = awkward
    for name, want in cases.items():
        if want is None:
            continue
        img, reason = load_rgb(d / name)
        assert reason is None, (name, reason)
        assert img.mode == "RGB" and img.size == (120, 80), name
        np.testing.assert_array_equal(np.asarray(img), want, err_msg=name)


def test_broken_files_are_reasons_not_exceptions(awkward):
    d, _ = awkward
    got = {name: load_rgb(d / name) for name in ["truncated.jpg", "empty.JPEG", "text.JPEG", "corrupt.png"]}
    assert {name: r for name, (img, r) in got.items()} == {
        "truncated.jpg": "truncated", "empty.JPEG": "empty file", "text.JPEG": "not an image",
        "corrupt.png": "unreadable",
    }
    assert all(img is None for img, _ in got.values())
    assert load_rgb(d / "vanished.jpg") == (None, "no such file")


def test_a_folder_of_awkward_images_evaluates_with_exact_skip_counts(awkward, tmp_path):
    """The decode rules inside a run: 6 images convert and are scored, 4 are skipped by reason."""
    from zoo.evaluate import evaluate
    from zoo.registry.schema import InputSpec

    d, cases = awkward
    names = sorted(cases)
    labels = [0 if i % 3 else 1 for i in range(len(names))]
    (d / "val_map.txt").write_text("".join(f"{n}\t{lab}\n" for n, lab in zip(names, labels))
                                   + "ILSVRC2012_val_00000404.JPEG\t0\n")
    ds = open_dataset(d)
    assert ds.layout == "val_map" and ds.missing == ["ILSVRC2012_val_00000404.JPEG"]

    res = evaluate(ds.samples, InputSpec(size=32, resize=36), lambda x: np.tile([1.0, 0.0], (len(x), 1)),
                   batch=4, workers=0, progress=False)  # always predicts class 0

    decodable = [lab for n, lab in zip(names, labels) if cases[n] is not None]
    assert (res.n_requested, res.n_evaluated) == (10, 6)
    assert res.skipped == {"truncated": 1, "empty file": 1, "not an image": 1, "unreadable": 1}
    assert res.skipped_examples["truncated"] == [str(d / "truncated.jpg")]
    assert res.correct1 == decodable.count(0) and res.top1 == 100.0 * decodable.count(0) / 6
    assert res.top5 == 100.0  # two classes: the label is always in the top 2
    assert [p for n, p in zip(names, res.predictions) if cases[n] is None] == [-1] * 4


# -- subsets ----------------------------------------------------------------------------------

def _samples_per_class(sizes):
    return [Sample(Path(f"c{c}/{j}.jpg"), c) for c, size in enumerate(sizes) for j in range(size)]


def test_stratified_subset_is_seeded_and_covers_every_class():
    samples = _samples_per_class([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])  # 55 samples, 10 classes, unbalanced
    a = stratified_subset(samples, 20, seed=0)
    assert a == stratified_subset(samples, 20, seed=0)
    assert any(stratified_subset(samples, 20, seed=s) != a for s in range(1, 4))
    assert len(a) == 20 and len(set(a)) == 20
    assert set(Counter(s.label for s in a)) == set(range(10))
    assert a == sorted(a, key=samples.index)  # dataset order kept


@pytest.mark.parametrize("n, per_class_min, per_class_max", [(10, 1, 1), (25, 1, 3), (3, 0, 1)])
def test_stratified_subset_sizes_and_balance(n, per_class_min, per_class_max):
    samples = _samples_per_class([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    sub = stratified_subset(samples, n, seed=7)
    counts = Counter(s.label for s in sub)
    assert len(sub) == n
    assert len(counts) == min(n, 10)  # round-robin: a new class before a second of any
    assert all(per_class_min <= counts.get(c, 0) <= per_class_max for c in range(10) if counts.get(c))
    if n == 25:  # class 0 has one image, class 1 two: the others fill in
        assert counts[0] == 1 and counts[1] == 2


def test_stratified_subset_of_more_than_all_is_all():
    samples = _samples_per_class([2, 3])
    assert stratified_subset(samples, 5, seed=0) == samples
    assert stratified_subset(samples, 99, seed=0) == samples


def test_calibration_sampling_still_stratifies_by_parent_folder():
    files = [Path(f"root/{c}/{j}.jpg") for c in "abcd" for j in range(5)]
    first = stratified_sample(files, 4, seed=3)
    assert sorted(f.parent.name for f in first) == ["a", "b", "c", "d"]
    assert stratified_sample(files, 4, seed=3) == first
    assert stratified_sample(files, 4, seed=3, key=lambda f: f.parent) == first


def test_dataset_num_labels():
    assert Dataset(Path("."), "val_label", _samples_per_class([2, 0, 3])).num_labels() == 2
