"""The vacc target: the vamc build kit's contents, its checks, and its contract with a (fake) vamc.

vamc cannot be installed here. The kit tests run with no vamc on PATH; the contract tests put a
FAKE vamc (`fake_vamc`, written below) first on PATH. The fake checks its arguments and the build
yaml it is given, exits 1 on anything wrong, logs its argv, and writes suite-shaped files.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import export_canonical
import yaml
from PIL import Image

import zoo
from zoo.calibration import CalibrationSet, calibration_images
from zoo.errors import UserError
from zoo.registry.schema import InputSpec, Interpolation, Output
from zoo.targets import get_target
from zoo.targets.base import TargetJob
from zoo.targets.vacc import config_checks, vdsp_checks

CONF = Path(zoo.__file__).parent / "conf" / "target" / "vacc.yaml"
KIT = "torchvision_resnext50_32x4d"
MEAN16 = [0.485107421875, 0.4560546875, 0.406005859375]  # numpy float16 of the ImageNet mean, read back
STD16 = [0.22900390625, 0.2239990234375, 0.2249755859375]


def options(**overrides):
    return {**yaml.safe_load(CONF.read_text()), **overrides}


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """The canonical ONNX of a freshly initialised torchvision resnext50_32x4d, exported once."""
    c = export_canonical(tmp_path_factory.mktemp("canonical"), get_target("vacc").onnx_spec(options(), "int8"))
    return {k: c[k] for k in ("path", "variant", "weights", "input", "spec")}


@pytest.fixture
def no_vamc(monkeypatch):
    """PATH without any vamc, so the kit tests hold wherever they run."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "vamc").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(dirs))


def make_job(tmp_path, canonical, precision="int8", onnx_path=None, weights=None, spec_input=None, **overrides):
    opts = options(**overrides)
    target = get_target("vacc")
    target.check_options(opts, precision)
    stage, work = tmp_path / "stage", tmp_path / "work"
    stage.mkdir()
    work.mkdir()
    job = TargetJob(variant=canonical["variant"], weights=weights or canonical["weights"],
                    input=spec_input or canonical["input"], precision=precision, options=opts,
                    onnx_path=onnx_path or canonical["path"], spec=target.onnx_spec(opts, precision), stage=stage,
                    work=work, calibration=CalibrationSet(None, 0) if precision == "int8" else None)
    return target, job


def build(target, job):
    prepared = target.prepare(job)
    return prepared, target.compile(job, prepared)


def failed(built):
    return [f"{c.name}: {c.detail}" for c in built.checks if not c.passed]


def test_int8_kit_current_schema(tmp_path, canonical, no_vamc):
    target, job = make_job(tmp_path, canonical)
    prepared, built = build(target, job)
    kit = job.stage
    assert failed(built) == []
    assert prepared == kit / "resnext50_32x4d.onnx" and prepared.read_bytes() == canonical["path"].read_bytes()

    cfg = yaml.safe_load((kit / f"{KIT}_int8.yaml").read_text())
    assert list(cfg) == ["name", "frontend", "backend", "graph", "dataset", "workspace"]  # the vendor's order
    assert cfg["name"] == f"{KIT}_int8"
    assert cfg["frontend"] == {"shape": {"input": [1, 3, 224, 224]}, "type": "onnx",
                               "checkpoint": "./resnext50_32x4d.onnx", "dtype": "fp32"}
    assert cfg["backend"] == {"type": "tvm_vacc", "dtype": "int8", "compile": {"cluster_mode": 0},
                              "quantize": {"calibrate_mode": "max", "quantize_per_channel": True}}
    assert cfg["graph"] == {"extra_ops": {"type": "softmax"}}  # torchvision outputs logits
    assert cfg["dataset"]["type"] == "tvm" and cfg["dataset"]["path"] == "./calib"
    assert cfg["dataset"]["sampler"] == {"suffix": "JPEG", "get_data_num": 50}
    assert cfg["dataset"]["process_ops"] == [
        {"type": "DecodeImage"}, {"type": "Resize", "size": [256, 256]},
        {"type": "CenterCrop", "crop_size": [224, 224]},
        {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}, {"type": "ToTensor"}]
    assert cfg["workspace"] == {"path": "./deploy_weights/"}
    # Relative paths resolve inside the kit, to the kit's own files.
    assert (kit / cfg["frontend"]["checkpoint"]).resolve() == prepared.resolve()
    assert (kit / cfg["dataset"]["path"]).resolve().parent == kit.resolve()

    vdsp = json.loads((kit / "torchvision-resnext50_32x4d-vdsp_params.json").read_text())
    assert vdsp["OpType"] == "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR"
    op = vdsp["OpConfig"]
    assert op["Mean"] == MEAN16 and op["Std"] == STD16
    assert op["Mean"][0] == 0.485107421875 != 0.485
    assert (op["ResizeWidth"], op["OimageWidth"], op["CropX"], op["CropY"]) == (256, 224, 16, 16)
    assert (op["IimageWidth"], op["IimageHeightPitch"], op["ResizeType"]) == (256, 256, "BILINEAR_CV")
    assert (op["NormaType"], op["ColorCvtCode"], op["IimageFormat"]) == ("DIV255_MINUSMEAN_DIVSTD", "NO_CHANGE",
                                                                         "RGB_PLANAR")

    calib = sorted((kit / "calib").iterdir())
    sources = calibration_images(50, seed=0)
    assert len(calib) == 50 and all(p.suffix == ".JPEG" for p in calib)
    for path, src in zip(calib, sources):
        with Image.open(path) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", src.size)
    for i in (0, 49):  # exactly the source image encoded at quality 95, 4:4:4
        buf = io.BytesIO()
        sources[i].save(buf, format="JPEG", quality=95, subsampling=0)
        assert calib[i].read_bytes() == buf.getvalue()
    with Image.open(calib[0]) as im:
        assert np.abs(np.asarray(im, np.float32) - np.asarray(sources[0], np.float32)).mean() < 4

    assert built.compiled is False and built.compiler == "vamc (not installed)"
    assert built.info["compiler_version"] is None
    assert built.commands == [f"vamc compile {KIT}_int8.yaml"]
    assert built.primary == kit / f"{KIT}_int8.yaml"
    assert all(p.is_file() and p.resolve().is_relative_to(kit.resolve()) for p in built.files)
    # onnx, yaml, vdsp json, CALIBRATION.md, KIT.md, the device scripts (4), calibration images
    assert len(built.files) == 1 + 1 + 1 + 1 + 1 + 4 + 50
    note = (kit / "CALIBRATION.md").read_text()  # generated images: said plainly, with the way out
    assert "GENERATED images (50, seed 0" in note and "calib_data=DIR" in note
    assert not (kit / "deploy_weights").exists()  # nothing suite-like is ever written without vamc
    text = "\n".join(target.describe(job, built))
    assert "the compiler was not run" in text and f"$ vamc compile {KIT}_int8.yaml" in text
    assert target.load(job, built) is None


def test_fp16_kit_has_no_quantization_or_dataset(tmp_path, canonical, no_vamc):
    target, job = make_job(tmp_path, canonical, precision="fp16")
    _, built = build(target, job)
    assert failed(built) == []
    cfg = yaml.safe_load((job.stage / f"{KIT}_fp16.yaml").read_text())
    assert list(cfg) == ["name", "frontend", "backend", "graph", "workspace"]
    assert cfg["backend"] == {"type": "tvm_vacc", "dtype": "fp16", "compile": {"cluster_mode": 0}}
    assert not (job.stage / "calib").exists()
    assert built.commands == [f"vamc compile {KIT}_fp16.yaml"] and built.compiled is False


def test_probs_source_and_bicubic_crop_pct_input(tmp_path, canonical, no_vamc):
    """A source that ends in softmax gets no extra one; a timm-style crop_pct / bicubic input is carried through."""
    weights = dataclasses.replace(canonical["weights"], output=Output.probs)
    spec = InputSpec(size=224, crop_pct=0.95, interpolation=Interpolation.bicubic)  # short side floor(224/0.95)=235
    target, job = make_job(tmp_path, canonical, weights=weights, spec_input=spec, calib_images=3)
    _, built = build(target, job)
    assert failed(built) == []
    cfg = yaml.safe_load((job.stage / f"{KIT}_int8.yaml").read_text())
    assert "graph" not in cfg
    assert cfg["dataset"]["process_ops"][1] == {"type": "Resize", "size": [235, 235]}
    assert cfg["dataset"]["sampler"]["get_data_num"] == 3
    op = json.loads((job.stage / "torchvision-resnext50_32x4d-vdsp_params.json").read_text())["OpConfig"]
    # vdsp has no plain BICUBIC, and vamc's calibration Resize is bilinear: the device resizes as calibration did
    assert (op["ResizeWidth"], op["CropX"], op["ResizeType"]) == (235, 5, "BILINEAR_CV")
    assert "bicubic" in built.info["resize_note"] and "BILINEAR_CV" in built.info["resize_note"]


# The vendor's own files for ResNeXt (VastModelZOO at 43aff36, cv/classification/resnext/build_in/):
# vdsp_params/timm-resnext50_32x4d-vdsp_params.json and torchvision-resnext50_32x4d-vdsp_params.json
# (identical), and build/torchvision_resnext.yaml's process_ops, transcribed.
VENDOR_VDSP = {
    "IimageFormat": "RGB_PLANAR", "IimageWidth": 256, "IimageHeight": 256, "OimageWidth": 224, "OimageHeight": 224,
    "CropX": 16, "CropY": 16, "ResizeWidth": 256, "ResizeHeight": 256, "IimageWidthPitch": 256, "IimageHeightPitch": 256,
    "Mean": [0.485107421875, 0.4560546875, 0.406005859375], "Std": [0.22900390625, 0.2239990234375, 0.2249755859375],
    "NormaType": "DIV255_MINUSMEAN_DIVSTD", "ColorCvtCode": "NO_CHANGE", "ResizeType": "BILINEAR_CV",
}
VENDOR_PROCESS_OPS = [{"type": "DecodeImage"}, {"type": "Resize", "size": [256, 256]},
                      {"type": "CenterCrop", "crop_size": [224, 224]},
                      {"type": "Normalize", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                      {"type": "ToTensor"}]


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_vdsp_params_and_calibration_ops_are_the_vendors_for_resnext50(source):
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights
    from zoo.targets.vacc import process_ops, vdsp_params

    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    w = select_weights(reg, v, source, "tv_in1k" if source == "timm" else None)  # timm's copy of torchvision's
    ops = vdsp_params(effective_input(v, w))
    assert ops["OpType"] == "FUSION_OP_RGB_RESIZE_CVTCOLOR_CROP_NORM_TENSOR"
    assert ops["OpConfig"] == VENDOR_VDSP
    assert process_ops(effective_input(v, w)) == VENDOR_PROCESS_OPS


def test_legacy_schema(tmp_path, canonical, no_vamc):
    target, job = make_job(tmp_path, canonical, schema="legacy", calib_images=4, calibrate_mode="percentile")
    _, built = build(target, job)
    assert failed(built) == []
    cfg = yaml.safe_load((job.stage / f"{KIT}_int8.yaml").read_text())
    assert list(cfg) == ["model", "engine", "dataset", "workspace"]
    assert cfg["model"] == {"name": f"{KIT}_int8", "inputs": {"input": [1, 3, 224, 224]},
                            "checkpoint": "./resnext50_32x4d.onnx"}
    assert cfg["engine"] == {"type": "vacc", "common": {"do_quantization": True},
                             "add_extra_ops_to_graph": {"type": "softmax"},
                             "calibration": {"quant_mode": "percentile", "per_channel": True}}
    assert cfg["dataset"]["path"] == "./calib" and cfg["dataset"]["sampler"] == {"suffix": "JPEG", "get_data_num": 4}
    assert [op["type"] for op in cfg["dataset"]["transform_ops"]] == ["DecodeImage", "Resize", "CenterCrop",
                                                                      "Normalize", "ToTensor"]
    assert cfg["workspace"] == {"work_dir": "./deploy_weights/", "enable_ir": False, "save_log": True}
    assert built.commands == [f"vamc build {KIT}_int8.yaml"]
    assert len(list((job.stage / "calib").glob("*.JPEG"))) == 4


def test_kit_checks_catch_a_broken_yaml_and_vdsp(tmp_path, canonical, no_vamc):
    target, job = make_job(tmp_path, canonical, calib_images=2)
    prepared, _ = build(target, job)
    path = job.stage / f"{KIT}_int8.yaml"
    cfg = yaml.safe_load(path.read_text())
    del cfg["backend"]["dtype"]
    cfg["backend"]["compile"]["cluster_mode"] = "0"
    cfg["workspace"]["work_dir"] = "./x"  # a legacy key in the current schema
    path.write_text(yaml.safe_dump(cfg))
    bad = [c for c in config_checks(path, job, "./resnext50_32x4d.onnx", 2) if not c.passed]
    assert len(bad) == 1 and "schema's keys and types" in bad[0].name
    for words in ("backend.dtype: missing", "backend.compile.cluster_mode: expected int, got str",
                  "workspace.work_dir: unexpected key"):
        assert words in bad[0].detail

    cfg = yaml.safe_load(path.read_text())
    cfg["backend"]["dtype"], cfg["backend"]["compile"]["cluster_mode"] = "int8", 0
    del cfg["workspace"]["work_dir"]
    cfg["dataset"]["sampler"]["get_data_num"] = 3  # more than the kit holds
    cfg["frontend"]["checkpoint"] = "../model.onnx"  # outside the kit
    path.write_text(yaml.safe_dump(cfg))
    bad = {c.name for c in config_checks(path, job, "./resnext50_32x4d.onnx", 2) if not c.passed}
    assert bad == {"vamc yaml sampler count matches the calibration files", "vamc yaml checkpoint is the kit's ONNX"}

    vdsp = job.stage / "torchvision-resnext50_32x4d-vdsp_params.json"
    doc = json.loads(vdsp.read_text())
    doc["OpConfig"]["Mean"] = [0.485, 0.456, 0.406]  # not float16 values: the device would round them
    vdsp.write_text(json.dumps(doc))
    bad = {c.name for c in vdsp_checks(vdsp, job.input) if not c.passed}
    assert bad == {"vdsp Mean/Std are float16 values", "vdsp Mean/Std are the registry's, rounded to float16"}


@pytest.mark.parametrize("overrides, words", [
    ({"batch": 8}, "target.batch=8"),
    ({"schema": "v3"}, "target.schema=v3: choose one of current, legacy"),
    ({"calibrate_mode": "minmax"}, "target.calibrate_mode=minmax: choose one of percentile, max, kl_divergence, mse"),
    ({"calib_images": 0}, "target.calib_images=0"),
])
def test_bad_options_are_user_errors(overrides, words):
    with pytest.raises(UserError) as e:
        get_target("vacc").check_options(options(**overrides), "int8")
    assert words in str(e.value) and "\n" not in str(e.value)


# --- contract with a FAKE vamc --------------------------------------------------------------------

FAKE_VAMC = r'''#!{python}
# fake_vamc: a FAKE stand-in for VastAI's vamc, used only by these tests. It checks the command
# line and the build yaml as strictly as vamc's documented contract allows, logs its argv, and
# writes suite-shaped files (it compiles nothing).
import json, os, pathlib, sys
import onnx, yaml

if sys.argv[1:] == ["--version"]:
    print("fake_vamc 0.0 (a FAKE vamc for these tests)")
    sys.exit(0)
with open(os.environ["FAKE_VAMC_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\n")

def fail(msg):
    print("fake_vamc: " + msg)
    sys.exit(1)

if os.environ.get("FAKE_VAMC_FAIL"):
    fail("quantization failed: " + os.environ["FAKE_VAMC_FAIL"])
if len(sys.argv) != 3 or sys.argv[1] not in ("compile", "build"):
    fail(f"usage: vamc compile|build <yaml>; got {{sys.argv[1:]}}")
verb, cfg_path = sys.argv[1:]
if pathlib.Path(cfg_path).is_absolute() or not pathlib.Path(cfg_path).is_file():
    fail(f"{{cfg_path}}: expected a yaml file relative to the kit folder")
cfg = yaml.safe_load(open(cfg_path))
if verb == "compile":
    need, name = {{"name", "frontend", "backend", "workspace"}}, cfg.get("name")
    model, shape = cfg["frontend"], cfg["frontend"]["shape"]
    int8, out = cfg["backend"]["dtype"] == "int8", cfg["workspace"]["path"]
    if cfg["backend"]["type"] != "tvm_vacc" or model["type"] != "onnx" or model["dtype"] != "fp32":
        fail("frontend/backend types")
    if int8 and set(cfg["backend"]["quantize"]) != {{"calibrate_mode", "quantize_per_channel"}}:
        fail("backend.quantize keys")
    ops = cfg.get("dataset", {{}}).get("process_ops")
else:
    need, name = {{"model", "engine", "workspace"}}, cfg["model"]["name"]
    model, shape = cfg["model"], cfg["model"]["inputs"]
    int8, out = cfg["engine"]["common"]["do_quantization"], cfg["workspace"]["work_dir"]
    if cfg["engine"]["type"] != "vacc":
        fail("engine.type")
    ops = cfg.get("dataset", {{}}).get("transform_ops")
if not need <= set(cfg) or (int8 and "dataset" not in cfg) or (not int8 and "dataset" in cfg):
    fail(f"{{verb}}: keys {{sorted(cfg)}}")
graph = onnx.load(model["checkpoint"], load_external_data=False).graph
dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
if {{graph.input[0].name: dims}} != shape:
    fail(f"shape {{shape}} does not match the ONNX ({{graph.input[0].name}} {{dims}})")
if int8:
    data = cfg["dataset"]
    files = sorted(pathlib.Path(data["path"]).glob("*." + data["sampler"]["suffix"]))
    if len(files) != data["sampler"]["get_data_num"] or not files:
        fail(f"{{len(files)}} calibration files, get_data_num {{data['sampler']['get_data_num']}}")
    if any(f.read_bytes()[:2] != b"\xff\xd8" for f in files):
        fail("a calibration file is not a JPEG")
    if [op["type"] for op in ops] != ["DecodeImage", "Resize", "CenterCrop", "Normalize", "ToTensor"]:
        fail("process ops")
if os.environ.get("FAKE_VAMC_NO_OUTPUT"):
    print("fake_vamc: finished without writing a suite")
    sys.exit(0)
suite = pathlib.Path(out) / name
suite.mkdir(parents=True, exist_ok=True)
for ext in (".so", ".json", ".params"):
    (suite / ("mod" + ext)).write_text("fake_vamc output\n")
print(f"fake_vamc: {{verb}} ok -> {{suite}}")
'''


@pytest.fixture
def fake_vamc(tmp_path, monkeypatch):
    """A FAKE vamc first on PATH; returns the path of its argv log."""
    bin_dir = tmp_path / "fake_bin"
    bin_dir.mkdir()
    exe = bin_dir / "vamc"
    exe.write_text(FAKE_VAMC.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "fake_vamc_argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_VAMC_LOG", str(log))
    return log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("schema, verb", [("current", "compile"), ("legacy", "build")])
def test_vamc_is_run_from_the_kit_and_its_suite_picked_up(tmp_path, canonical, fake_vamc, schema, verb):
    target, job = make_job(tmp_path, canonical, schema=schema, calib_images=5)
    _, built = build(target, job)
    kit = job.stage
    assert failed(built) == []
    assert calls(fake_vamc) == [{"argv": [verb, f"{KIT}_int8.yaml"], "cwd": str(kit)}]
    assert built.compiled is True and built.compiler == "vamc (found on PATH)"
    printed = "fake_vamc 0.0 (a FAKE vamc for these tests)"  # what the fake above prints for --version
    assert built.info["compiler_version"] == {"path": shutil.which("vamc"), "version": printed, "printed": printed,
                                             "exit_code": 0}
    assert built.commands == [f"vamc {verb} {KIT}_int8.yaml"]
    suite = kit / "deploy_weights" / f"{KIT}_int8"
    assert built.primary == suite / "mod.so"
    outputs = {suite / "mod.so", suite / "mod.json", suite / "mod.params", kit / "build_logs" / "vamc.log"}
    assert outputs <= set(built.files)
    assert built.info["suite"] == [f"deploy_weights/{KIT}_int8/mod{e}" for e in (".json", ".params", ".so")]
    assert f"fake_vamc: {verb} ok" in (kit / "build_logs" / "vamc.log").read_text()
    text = "\n".join(target.describe(job, built))
    assert f"compiled with vamc: deploy_weights/{KIT}_int8/mod.so" in text
    assert f"vamp -m deploy_weights/{KIT}_int8/mod " in text


def test_a_failing_vamc_is_a_failed_check(tmp_path, canonical, fake_vamc, monkeypatch):
    monkeypatch.setenv("FAKE_VAMC_FAIL", "out of memory")
    target, job = make_job(tmp_path, canonical, precision="fp16")
    _, built = build(target, job)
    assert len(calls(fake_vamc)) == 1
    bad = [c for c in built.checks if not c.passed]
    assert len(bad) == 1 and bad[0].name == f"`vamc compile {KIT}_fp16.yaml` succeeded"
    assert "exit 1" in bad[0].detail and "quantization failed: out of memory" in bad[0].detail
    assert built.compiled is False and built.primary == job.stage / f"{KIT}_fp16.yaml"
    assert not (job.stage / "deploy_weights").exists()
    assert "vamc ran and failed" in "\n".join(target.describe(job, built))


def test_a_vamc_that_writes_no_suite_is_not_compiled(tmp_path, canonical, fake_vamc, monkeypatch):
    monkeypatch.setenv("FAKE_VAMC_NO_OUTPUT", "1")
    target, job = make_job(tmp_path, canonical, precision="fp16")
    _, built = build(target, job)
    assert failed(built) == ["vamc wrote a model suite: nothing under ./deploy_weights/"]
    assert built.compiled is False and len(calls(fake_vamc)) == 1


def test_vamc_is_not_fed_a_kit_that_fails_its_checks(tmp_path, canonical, fake_vamc):
    model = onnx.load(str(canonical["path"]))
    model.graph.input[0].name = "images"  # not the input name vamc's yaml is written for
    for node in model.graph.node:
        node.input[:] = ["images" if x == "input" else x for x in node.input]
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    target, job = make_job(tmp_path, canonical, precision="fp16", onnx_path=wrong)
    _, built = build(target, job)
    assert [c.name for c in built.checks if not c.passed] == ["onnx input name"]
    assert calls(fake_vamc) == [] and built.compiled is False


def test_the_fake_vamc_rejects_bad_input(tmp_path, fake_vamc):
    """The fake is strict: a wrong verb or a missing yaml exits 1 with a message."""
    exe = str(Path(os.environ["PATH"].split(os.pathsep)[0]) / "vamc")
    for argv in (["convert", "x.yaml"], ["compile", "missing.yaml"]):
        run = subprocess.run([exe, *argv], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 1 and run.stdout.startswith("fake_vamc: ")


def test_a_compiler_version_is_recorded_as_it_printed_it(tmp_path):
    """A tool that prints usage (exit 2) for --version is recorded with what it printed, and no version."""
    from zoo.targets.kit import tool_version

    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\necho 'usage: tool compile CFG' >&2\nexit 2\n")
    exe.chmod(0o755)
    assert tool_version(str(exe)) == {"path": str(exe), "version": None, "printed": "usage: tool compile CFG",
                                      "exit_code": 2}
    gone = tmp_path / "removed"
    assert tool_version(str(gone)) == {"path": str(gone), "version": None, "printed": "",
                                       "error": "FileNotFoundError"}
