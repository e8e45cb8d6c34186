"""Where an int8 artifact's calibration came from, in every view: the convert summary, `zoo results`
(table, markdown, csv, json), the HTML report's table and grid, the kit's calibration note, the model
card; and `publish` refusing generated calibration unless forced, alone and in a sweep.

Two real conversions (weights=random): onnx int8 on generated images, and a vacc int8 kit calibrated
on a folder of real image files made here (its record is checked against the folder itself).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import yaml
from PIL import Image

import zoo
from conftest import manifest_of, run_zoo

VARIANT, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"
ONNX = ["model=resnext50_32x4d", "source=torchvision", "target=onnx", "precision=int8"]
VACC = ["model=resnext50_32x4d", "source=torchvision", "target=vacc", "precision=int8"]
CLASSES = {"cat": 4, "dog": 5, "fish": 3}  # 12 images: the vacc kit takes every one (target.calib_images=12)
CONF = Path(zoo.__file__).parent / "conf" / "target"


def _calib_folder(root: Path) -> Path:
    """An ImageFolder tree of PNGs, plus a file that is no image (not calibration data)."""
    rng = np.random.default_rng(5)
    for cls, n in CLASSES.items():
        (root / cls).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(90 + 7 * i, 120, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}_{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


def _tree_sha256(root: Path) -> str:
    """Names and bytes of every image under root, in path order: what the record must hash."""
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.png"), key=lambda p: p.relative_to(root).as_posix()):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Dict[str, object]:
    base = tmp_path_factory.mktemp("provenance")
    out, calib = base / "artifacts", _calib_folder(base / "real_images")
    gen = run_zoo("convert", *ONNX, "weights=random", f"out_dir={out}", "progress=false")
    assert gen.returncode == 0, gen.stderr[-3000:]
    real = run_zoo("convert", *VACC, "weights=random", f"calib_data={calib}", "target.calib_images=12",
                   f"out_dir={out}", "progress=false")
    assert real.returncode == 0, real.stderr[-3000:]
    return {"out": out, "calib": calib, "gen": gen.stdout, "real": real.stdout,
            "onnx": manifest_of(out, VARIANT, SOURCE, TAG, "onnx-int8"),
            "vacc": manifest_of(out, VARIANT, SOURCE, TAG, "vacc-int8")}


def _line(summary: str, key: str) -> str:
    (line,) = [ln.strip() for ln in summary.splitlines() if ln.strip().startswith(key + " ")]
    return line


def test_generated_calibration_is_recorded_and_said_in_the_summary(built):
    rec = built["onnx"]["calibration"]
    want = yaml.safe_load((CONF / "onnx.yaml").read_text())["int8"]["calib_images"]
    assert (rec["source"], rec["images"], rec["seed"], rec["folder"], rec["sha256"]) == ("generated", want, 0, None,
                                                                                         None)
    assert "calib_data=DIR" in rec["warning"]
    line = _line(built["gen"], "calibration")
    assert line.startswith(f"calibration GENERATED images ({want}, seed 0") and "calib_data=DIR" in line


def test_folder_calibration_is_hashed_counted_and_said_without_a_warning(built):
    calib, rec = built["calib"], built["vacc"]["calibration"]
    n_images = sum(CLASSES.values())
    assert rec["source"] == "folder" and rec["folder"] == str(calib) and "warning" not in rec
    assert rec["images"] == n_images and rec["classes"] == len([d for d in calib.iterdir() if d.is_dir()])
    assert rec["sha256"] == _tree_sha256(calib)
    assert len(list((built["out"] / VARIANT / SOURCE / TAG / "vacc-int8" / "calib").glob("*.JPEG"))) == n_images
    line = _line(built["real"], "calibration")
    assert line.startswith(f"calibration {n_images} images from {calib.name}/, {len(CLASSES)} classes, "
                           f"sha256 {rec['sha256'][:12]}") and "GENERATED" not in line
    note = (built["out"] / VARIANT / SOURCE / TAG / "vacc-int8" / "CALIBRATION.md").read_text()
    assert line.removeprefix("calibration ") in note and "Warning" not in note and "GENERATED" not in note


def test_results_show_the_line_and_json_the_record(built):
    from zoo.calibration import describe

    out, gen, real = built["out"], built["onnx"]["calibration"], built["vacc"]["calibration"]
    r = run_zoo("results", f"out_dir={out}", "format=json")
    assert r.returncode == 0, r.stderr
    rows = {row["target"]: row for row in json.loads(r.stdout)["rows"]}
    assert rows["onnx"]["calibration"] == gen and rows["vacc"]["calibration"] == real
    r = run_zoo("results", f"out_dir={out}", "format=csv")
    by_target = {row["target"]: row["calibration"] for row in csv.DictReader(io.StringIO(r.stdout))}
    assert by_target == {"onnx": describe(gen), "vacc": describe(real)}
    assert by_target["onnx"].startswith("GENERATED images") and by_target["vacc"].startswith("12 images from")
    r = run_zoo("results", f"out_dir={out}", "format=markdown")
    head, _, onnx_row, vacc_row = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert head.rstrip(" |").endswith("| calibration")
    assert onnx_row.rstrip(" |").endswith(describe(gen)) and vacc_row.rstrip(" |").endswith(describe(real))
    r = run_zoo("results", f"out_dir={out}")
    assert "GENERATED images" in r.stdout and "12 images from" in r.stdout


def test_report_marks_a_generated_calibration_cell(built, tmp_path):
    page = tmp_path / "report.html"
    r = run_zoo("report", f"out_dir={built['out']}", f"report_file={page}")
    assert r.returncode == 0, r.stderr
    html = page.read_text()
    row = re.search(rf'<tr data-variant="{VARIANT}">.*?</tr>', html).group(0)
    cell = {t: re.search(rf'<td class="([^"]*)" data-target="{t}" data-precision="int8"[^>]*>(.*?)</td>', row)
            for t in ("onnx", "vacc")}
    assert cell["onnx"].group(1).split() == ["cell", "passed", "generated-calibration"]
    assert "generated calibration" in cell["onnx"].group(2)
    assert cell["vacc"].group(1).split() == ["cell", "kit-only"] and "generated" not in cell["vacc"].group(2)
    table = re.search(r'<table id="results".*?</table>', html).group(0)
    assert table.count("GENERATED images (") == 1 and "12 images from real_images/" in table


def _publish(out: Path, root: Path, *extra: str, art=ONNX):
    return run_zoo("publish", *art, f"out_dir={out}", "hub=local", f"hub.root={root}", "hub.org=zoo-test",
                   "progress=false", *extra)


def test_publish_refuses_generated_calibration_and_force_publishes_it_with_a_warning(built, tmp_path):
    from huggingface_hub import ModelCard

    root = tmp_path / "mirror"
    for extra in ((), ("dry_run=true",)):
        r = _publish(built["out"], root, *extra)
        assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr, r.stderr
        (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert line.startswith("error: ") and "generated images" in line and "calib_data=DIR" in line
        assert "force=true" in line and not root.exists()
    r = _publish(built["out"], root, "force=true")
    assert r.returncode == 0, r.stderr
    card = ModelCard((root / f"zoo-test/{VARIANT}-{SOURCE}-{TAG}-onnx-int8" / "README.md").read_text())
    first = card.text.lstrip().split("\n\n")[0]
    assert "GENERATED CALIBRATION" in first and "force=true" in first and "calib_data=DIR" in first
    assert f"- calibration: GENERATED images ({built['onnx']['calibration']['images']}, seed 0" in card.text
    # a folder-calibrated kit is not refused (dry run: nothing written)
    r = _publish(built["out"], tmp_path / "m2", "dry_run=true", art=VACC)
    assert r.returncode == 0, r.stderr


def test_sweep_records_the_refusal_and_publishes_the_rest(built, tmp_path):
    root = tmp_path / "mirror"
    r = run_zoo("-m", "publish", "model=resnext50_32x4d", "source=torchvision", "target=onnx,vacc",
                "precision=int8", f"out_dir={built['out']}", "hub=local", f"hub.root={root}", "hub.org=zoo-test",
                "progress=false", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"job failed: .*calibrated on generated images.*calib_data=DIR", r.stderr)
    repos = sorted(p.name for p in (root / "zoo-test").iterdir() if not p.name.startswith("."))  # not locks
    assert repos == [f"{VARIANT}-{SOURCE}-{TAG}-vacc-int8"]
    card = (root / f"zoo-test/{VARIANT}-{SOURCE}-{TAG}-vacc-int8" / "README.md").read_text()
    assert f"- calibration: 12 images from real_images/, {len(CLASSES)} classes" in card
    assert "GENERATED" not in card
