"""`zoo results` and `zoo gc` over real artifacts built by the CLI (resnext50_32x4d, random weights,
onnx and openvino), plus folders made to look like what sweeps leave behind: a corrupt manifest, a
staging folder, artifacts of a variant or precision the configuration no longer has."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict

import pytest

from conftest import manifest_of, run_zoo

VARIANT, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"
TARGETS = ("onnx", "openvino")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "artifacts"
    for target in TARGETS:
        r = run_zoo("convert", f"model={VARIANT}", f"source={SOURCE}", f"target={target}", "weights=random",
                    f"out_dir={out}", "progress=false", env={"ZOO_CACHE": str(out.parent / "cache")})
        assert r.returncode == 0, r.stderr
    return out


def _link_or_copy(src: str, dst: str) -> None:
    """Model files are hard-linked (cheap); manifests are copied, since tests rewrite some of them."""
    if os.path.basename(src) != "manifest.json":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


@pytest.fixture
def tree(built, tmp_path) -> Path:
    """A private copy of the built artifacts for one test."""
    out = tmp_path / "artifacts"
    shutil.copytree(built, out, copy_function=_link_or_copy)
    return out


def results_json(out: Path, *args: str) -> dict:
    r = run_zoo("results", f"out_dir={out}", "format=json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def gc_json(out: Path, *args: str) -> dict:
    r = run_zoo("gc", f"out_dir={out}", "format=json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _manifest(out: Path, target: str) -> dict:
    return manifest_of(out, VARIANT, SOURCE, TAG, target)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _bytes(folder: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _, files in os.walk(folder) for f in files)


def _published_top1() -> float:
    from zoo.artifact_validation import published_top1
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant, select_weights

    reg = load_registry()
    value, _ = published_top1(select_weights(reg, resolve_variant(reg, VARIANT), SOURCE, TAG))
    return value


# --- results -------------------------------------------------------------------------------------

def test_json_rows_carry_the_manifests_numbers(tree):
    doc = results_json(tree)
    assert doc["skipped"] == []
    rows = {r["target"]: r for r in doc["rows"]}
    assert [r["target"] for r in doc["rows"]] == list(TARGETS)
    for target in TARGETS:
        r, m = rows[target], _manifest(tree, target)
        v = m["validation"]
        assert (r["variant"], r["source"], r["tag"], r["precision"]) == (VARIANT, SOURCE, TAG, "fp32")
        assert r["status"] == "passed" and r["reason"] == "" and r["build"] == "compiled"
        assert r["params"] == v["params"]["graph"] == 25_028_904
        assert r["params_published"] == v["params"]["published"][0]["value"]
        assert r["params_published_doc"] == v["params"]["published"][0]["doc"]
        assert r["macs"] == v["macs"]["graph"]
        assert r["gmacs"] == round(v["macs"]["graph"] / 1e9, 3)
        assert r["gmacs_published"] == v["macs"]["published"][0]["value_g"]
        assert r["gmacs_published_convention"] == v["macs"]["published"][0]["convention"]
        sets = v["parity"]["sets"].values()
        assert r["source_cosine"] == min(p["cosine"] for p in sets) > 0.99999
        assert r["source_max_abs"] == max(p["max_abs"] for p in sets)
        files = m["artifact"]["files"]
        assert r["size_bytes"] == sum(f["size"] for f in files) == sum(
            (tree / VARIANT / SOURCE / TAG / target / f["name"]).stat().st_size for f in files)
        assert r["timings_s"] == m["timings_s"]
        assert r["time_s"] == round(sum(m["timings_s"].values()), 1)
        peaks = m["peak_rss_mb"]["process"]
        assert max(peaks.values()) <= r["peak_rss_mib"] < 64 * 1024  # the largest stage, its child counted
        if target == TARGETS[0]:  # the first build made the canonical model: its stages start at the import
            assert r["stages"].startswith(f"import {m['timings_s']['import']:.1f} ")
        else:  # the later one linked it: no source stage ran, and the row shows the target's own
            assert not {"import", "build", "export"} & set(m["timings_s"]) and m["canonical"]["reused"]
            assert r["stages"].startswith(f"compile {m['timings_s']['compile']:.1f} ")
        assert r["top1"] is None and r["top1_published"] == _published_top1()
    target_sets = _manifest(tree, "openvino")["validation"]["target"]["parity"]["sets"].values()
    assert rows["openvino"]["target_cosine"] == min(p["cosine"] for p in target_sets)
    assert rows["openvino"]["target_max_abs"] == max(p["max_abs"] for p in target_sets)
    assert rows["onnx"]["target_cosine"] is None and rows["onnx"]["target_parity"].startswith("skipped: ")


def test_reason_names_failed_checks_accuracy_and_kit_only(tree):
    from zoo.store import write_json

    folder = tree / VARIANT / SOURCE / TAG
    m = _manifest(tree, "openvino")
    m["status"] = "failed"
    m["validation"]["macs"]["passed"] = False
    m["validation"]["target"]["checks"][1]["passed"] = False
    write_json(folder / "openvino" / "manifest.json", m)
    m = _manifest(tree, "onnx")
    m["accuracy"] = {"result": {"top1": 12.5, "top5": 40.25, "n_evaluated": 200},
                     "published_top1": 77.618, "verdict": {"passed": False}}
    write_json(folder / "onnx" / "manifest.json", m)
    # A vendor kit whose compiler is not installed here (manifest only: results reads nothing else).
    kit = dict(m, target="vacc", precision="int8", accuracy=None)
    kit["artifact"] = dict(m["artifact"], compiled=False, compiler="vamc not installed", commands=["vamc build x"])
    (folder / "vacc-int8").mkdir()
    write_json(folder / "vacc-int8" / "manifest.json", kit)

    rows = {r["target"]: r for r in results_json(tree)["rows"]}
    ov_check = _manifest(tree, "openvino")["validation"]["target"]["checks"][1]["name"]
    assert rows["openvino"]["status"] == "failed"
    assert rows["openvino"]["reason"] == f"failed: macs, target check '{ov_check}'"
    assert rows["onnx"]["status"] == "passed" and rows["onnx"]["reason"] == "failed: accuracy"
    assert (rows["onnx"]["top1"], rows["onnx"]["top5"], rows["onnx"]["images"]) == (12.5, 40.25, 200)
    assert rows["vacc"]["build"] == "kit only" and rows["vacc"]["reason"] == "kit only (vamc not installed)"
    assert rows["vacc"]["precision"] == "int8"


def test_csv_markdown_and_table(tree):
    ov = _manifest(tree, "openvino")["validation"]
    r = run_zoo("results", f"out_dir={tree}", "format=csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["target"] for row in rows] == list(TARGETS)
    row = rows[1]
    # Full precision survives CSV: the worst cosine reads back as exactly the manifest's float.
    assert float(row["source_cosine"]) == min(p["cosine"] for p in ov["parity"]["sets"].values())
    assert float(row["target_max_abs"]) == max(p["max_abs"] for p in ov["target"]["parity"]["sets"].values())
    assert int(row["params"]) == ov["params"]["graph"]
    assert int(row["size_bytes"]) == sum(f["size"] for f in _manifest(tree, "openvino")["artifact"]["files"])
    assert "timings_s" not in row and row["stages"].startswith("compile ")  # openvino reused the canonical model

    r = run_zoo("results", f"out_dir={tree}", "format=markdown")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert lines[0].startswith("| variant | source | tag | target | precision | status |") and len(lines) == 4
    assert lines[3].startswith(f"| {VARIANT} | {SOURCE} | {TAG} | openvino | fp32 | passed |  | 25,028,904 |")
    published = ov["macs"]["published"][0]
    assert f"| {published['value_g']:g} {published['convention']} |" in lines[3]

    r = run_zoo("results", f"out_dir={tree}")
    assert r.returncode == 0, r.stderr
    assert sum(VARIANT in ln for ln in r.stdout.splitlines()) == 2 and "25,028,904" in r.stdout
    assert r.stderr.strip() == f"2 artifact(s) under {tree}"


def test_unreadable_and_partial_manifests_are_skipped_and_counted(tree):
    corrupt = _write(tree / "resnext101_32x8d" / SOURCE / TAG / "onnx" / "manifest.json", "{ not json").parent
    partial = _write(tree / VARIANT / "timm" / "a1h_in1k" / "onnx" / "manifest.json",
                     json.dumps({"variant": VARIANT})).parent
    # A staging folder holding a complete-looking manifest: still a build in progress, not a row.
    staging = tree / VARIANT / SOURCE / TAG / ".onnx.staging-k2j4"
    shutil.copytree(tree / VARIANT / SOURCE / TAG / "onnx", staging, copy_function=_link_or_copy)
    # A manifest copied into another artifact's folder describes what it was built as, not this folder.
    copied = _write(tree / VARIANT / SOURCE / TAG / "onnx-fp16" / "manifest.json",
                    (tree / VARIANT / SOURCE / TAG / "onnx" / "manifest.json").read_text()).parent
    _write(tree / "calib" / "vacc" / "manifest.json", json.dumps({"n": 3}))  # zoo calib's, not an artifact

    doc = results_json(tree)
    assert [r["target"] for r in doc["rows"]] == list(TARGETS)
    skipped = {s["path"]: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {str(corrupt), str(partial), str(staging), str(copied)}
    assert skipped[str(corrupt)].startswith("unreadable manifest.json")
    assert skipped[str(partial)].startswith("incomplete manifest.json (no source, tag, target, precision")
    assert skipped[str(staging)].startswith("staging folder")
    assert skipped[str(copied)] == f"manifest of another artifact ({VARIANT}/{SOURCE}/{TAG}/onnx/fp32)"

    r = run_zoo("results", f"out_dir={tree}")
    assert r.returncode == 0, r.stderr
    (footer,) = r.stderr.strip().splitlines()
    assert footer.startswith(f"2 artifact(s) under {tree}; skipped 4 folder(s): ")
    assert "1 unreadable manifest.json" in footer and "1 incomplete manifest.json" in footer


def test_filter_and_source(tree):
    _write(tree / "resnext101_32x8d" / SOURCE / "IMAGENET1K_V1" / "onnx" / "manifest.json", "{ not json")
    by_alias = results_json(tree, "filter=resnext50")  # an alias of resnext50_32x4d, as in `zoo list`
    assert len(by_alias["rows"]) == 2 and by_alias["skipped"] == []
    other = results_json(tree, "filter=resnext101*")
    assert other["rows"] == [] and len(other["skipped"]) == 1
    assert results_json(tree, "source=timm")["rows"] == []
    both = results_json(tree, "source=torchvision", "filter=resnext50_*")["rows"]
    assert [r["target"] for r in both] == list(TARGETS)


# --- gc ------------------------------------------------------------------------------------------

def _set_mtime(folder: Path, when: float) -> None:
    for d, dirs, files in os.walk(folder):
        for name in dirs + files:
            os.utime(os.path.join(d, name), (when, when))
    os.utime(folder, (when, when))


def _fabricate_garbage(tree: Path) -> Dict[Path, str]:
    """Stale folders of each kind, and what gc must say about each."""
    real = (tree / VARIANT / SOURCE / TAG / "onnx" / "manifest.json").read_text()
    tag = tree / VARIANT / SOURCE / TAG
    unknown = tree / "resnext999_1x1d"
    _write(unknown / SOURCE / TAG / "onnx" / "manifest.json", real.replace(VARIANT, "resnext999_1x1d"))
    _write(unknown / SOURCE / TAG / "onnx" / "model.onnx", "x" * 1000)
    _write(tag / "mindir-int8" / "manifest.json", real)
    _write(tag / "tflite-fp16" / "manifest.json", real)
    _write(tree / VARIANT / SOURCE / "IMAGENET1K_V9" / "onnx" / "manifest.json", real)
    _write(tree / VARIANT / SOURCE / "IMAGENET1K_V2" / "onnx" / "model.onnx", "y" * 500)
    _write(tree / VARIANT / "timm" / "a1h_in1k" / "onnx" / "manifest.json", "{")
    # Same variant and tag, but the manifest names another target: not this folder's artifact.
    _write(tag / "mindir" / "manifest.json", real)
    old_staging = tag / ".onnx.staging-a1b2c3"
    _write(old_staging / ".work" / "raw.onnx", "z" * 2000)
    _set_mtime(old_staging, time.time() - 3 * 3600)
    old_swap = tag / ".openvino.old-4242"
    _write(old_swap / "model.bin", "w" * 300)
    _set_mtime(old_swap, time.time() - 30 * 3600)
    return {
        unknown: "variant 'resnext999_1x1d' is not in the registry",
        tag / "mindir-int8": "precision int8 is not one of mindir's (fp32)",
        tag / "tflite-fp16": "target 'tflite' is not a known target",
        tree / VARIANT / SOURCE / "IMAGENET1K_V9": f"{VARIANT} from {SOURCE} has no tag 'IMAGENET1K_V9'",
        tree / VARIANT / SOURCE / "IMAGENET1K_V2" / "onnx": "no manifest.json",
        tree / VARIANT / "timm" / "a1h_in1k" / "onnx": "unreadable manifest.json",
        tag / "mindir": f"manifest of another artifact ({VARIANT}/{SOURCE}/{TAG}/onnx/fp32)",
        old_staging: "staging folder of an unfinished build, last written 3.0 h ago",
        old_swap: "old artifact left by a swap, last written 30.0 h ago",
    }


def test_gc_lists_then_removes_exactly_the_stale_folders(tree):
    before = results_json(tree)["rows"]
    garbage = _fabricate_garbage(tree)
    sizes = {p: _bytes(p) for p in garbage}
    fresh = tree / VARIANT / SOURCE / TAG / ".openvino.staging-f9e8"
    _write(fresh / ".work" / "model.xml", "<net/>")
    keep = [_write(tree / "calib" / "vacc" / "manifest.json", "{}"), _write(tree / "notes" / "todo.txt", "mine")]

    for args in ((), ("dry_run=false",)):  # dry_run=false (the global default) does not make gc remove
        doc = gc_json(tree, *args)
        assert doc["applied"] is False and doc["freed_bytes"] == 0
        listed = {Path(r["path"]): r for r in doc["rows"]}
        assert set(listed) == set(garbage)
        for path, reason in garbage.items():
            assert listed[path]["reason"].startswith(reason), listed[path]["reason"]
            assert listed[path]["bytes"] == sizes[path] > 0 and listed[path]["action"] == "would remove"
        assert [k["path"] for k in doc["kept"]] == [str(fresh)]
        assert all(p.exists() for p in garbage)

    r = run_zoo("gc", f"out_dir={tree}", "apply=true")
    assert r.returncode == 0, r.stderr
    assert f"removed {len(garbage)} folder(s)" in r.stderr and f"kept {fresh}: staging folder" in r.stderr
    assert sum(ln.startswith("│ removed") for ln in r.stdout.splitlines()) == len(garbage)
    assert not any(p.exists() for p in garbage)
    assert not list(tree.rglob("*.old-gc*"))  # renamed, then deleted: nothing half-removed left behind
    assert fresh.is_dir() and all(p.is_file() for p in keep)
    assert results_json(tree)["rows"] == before
    for target in TARGETS:
        m = _manifest(tree, target)
        for f in m["artifact"]["files"]:
            assert (tree / VARIANT / SOURCE / TAG / target / f["name"]).stat().st_size == f["size"]
    again = gc_json(tree, "apply=true")
    assert again["rows"] == [] and again["freed_bytes"] == 0


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("results", "format=xml"), "error: unknown format 'xml'"),
    (("results", "out_dir=/nonexistent/zoo-artifacts"), "error: out_dir=/nonexistent/zoo-artifacts: no such folder"),
    (("gc", "out_dir=/nonexistent/zoo-artifacts"), "error: out_dir=/nonexistent/zoo-artifacts: no such folder"),
    (("gc", "apply=maybe"), "error: apply=maybe: expected true or false"),
    (("gc", "stale_hours=-1"), "error: stale_hours=-1: expected a number of hours"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    r = run_zoo(*args, cwd=tmp_path) if "out_dir" in args[1] else run_zoo(*args, f"out_dir={tmp_path}")
    assert r.returncode == 2, (r.stdout, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(message), line
