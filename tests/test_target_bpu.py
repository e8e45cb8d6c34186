"""The bpu target: the hb_mapper build kit's contents, its checks, and its contract with a (fake) hb_mapper.

hb_mapper cannot be installed here. The kit tests run with no hb_mapper on PATH; the contract tests
put a FAKE hb_mapper (`fake_hb_mapper`, written below) first on PATH. The fake checks its arguments,
the config yaml and the calibration files, exits 1 on anything wrong, logs its argv, and writes
files named as hb_mapper names its outputs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import export_canonical
import yaml

import zoo
from zoo.calibration import CalibrationSet, calibration_images
from zoo.errors import UserError
from zoo.preprocess import resize_crop
from zoo.targets import get_target
from zoo.targets.base import TargetJob
from zoo.targets.bpu import config_checks

CONF = Path(zoo.__file__).parent / "conf" / "target" / "bpu.yaml"
PREFIX = "resnext50_32x4d_224x224_nv12"
CONFIG = "resnext50_32x4d_config.yaml"
FILE_BYTES = 3 * 224 * 224 * 4  # 602,112


def options(**overrides):
    return {**yaml.safe_load(CONF.read_text()), **overrides}


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """The canonical ONNX (input `data`) of a freshly initialised torchvision resnext50_32x4d, exported once."""
    c = export_canonical(tmp_path_factory.mktemp("canonical"), get_target("bpu").onnx_spec(options(), "int8"))
    return {k: c[k] for k in ("path", "variant", "weights", "input")}


@pytest.fixture
def no_hb_mapper(monkeypatch):
    """PATH without any hb_mapper, so the kit tests hold wherever they run."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not (Path(d) / "hb_mapper").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(dirs))


def make_job(tmp_path, canonical, **overrides):
    opts = options(**overrides)
    target = get_target("bpu")
    target.check_options(opts, "int8")
    stage, work = tmp_path / "stage", tmp_path / "work"
    stage.mkdir()
    work.mkdir()
    job = TargetJob(variant=canonical["variant"], weights=canonical["weights"], input=canonical["input"],
                    precision="int8", options=opts, onnx_path=canonical["path"], spec=target.onnx_spec(opts, "int8"),
                    stage=stage, work=work, calibration=CalibrationSet(None, 0))
    return target, job


def build(target, job):
    prepared = target.prepare(job)
    return prepared, target.compile(job, prepared)


def failed(built):
    return [f"{c.name}: {c.detail}" for c in built.checks if not c.passed]


def test_kit_contents(tmp_path, canonical, no_hb_mapper):
    target, job = make_job(tmp_path, canonical)
    prepared, built = build(target, job)
    kit = job.stage
    assert failed(built) == []
    assert prepared == kit / "resnext50_32x4d.onnx" and prepared.read_bytes() == canonical["path"].read_bytes()

    cfg = yaml.safe_load((kit / CONFIG).read_text())
    assert cfg["model_parameters"] == {"onnx_model": "./resnext50_32x4d.onnx", "march": "bayes-e",
                                       "layer_out_dump": False, "working_dir": PREFIX,
                                       "output_model_file_prefix": PREFIX}
    inp = cfg["input_parameters"]
    assert {k: v for k, v in inp.items() if k not in ("mean_value", "scale_value")} == {
        "input_name": "data", "input_type_rt": "nv12", "input_type_train": "rgb", "input_layout_train": "NCHW",
        "input_shape": "1x3x224x224", "norm_type": "data_mean_and_scale"}
    assert inp["mean_value"] == "123.675 116.28 103.53"
    assert inp["scale_value"] == "0.017124754 0.017507003 0.017429194"
    scale = np.array([float(x) for x in inp["scale_value"].split()])
    assert np.abs(scale * np.array([0.229, 0.224, 0.225]) * 255 - 1).max() < 1e-6
    assert cfg["calibration_parameters"] == {"cal_data_dir": "./calibration_data_rgb_f32", "cal_data_type": "float32",
                                             "calibration_type": "default"}
    assert cfg["compiler_parameters"] == {"compile_mode": "latency", "debug": False, "optimize_level": "O3"}
    assert (kit / cfg["model_parameters"]["onnx_model"]).resolve() == prepared.resolve()
    cal_dir = (kit / cfg["calibration_parameters"]["cal_data_dir"]).resolve()
    assert cal_dir.parent == kit.resolve()

    files = sorted(cal_dir.iterdir())
    assert len(files) == 100 and all(f.suffix == ".rgbchw" and f.stat().st_size == FILE_BYTES for f in files)
    images = calibration_images(100, seed=0)
    for i in (0, 57, 99):  # float32 CHW, RGB, 0-255: the registry's resize and centre crop, not normalised
        back = np.fromfile(files[i], dtype=np.float32).reshape(3, 224, 224)
        hwc = np.asarray(resize_crop(images[i], canonical["input"]))
        assert np.array_equal(back, hwc.transpose(2, 0, 1).astype(np.float32))
        assert back.min() >= 0 and back.max() <= 255 and back.max() > 1  # not scaled to 0-1

    assert built.compiled is False and built.compiler == "hb_mapper (not installed)"
    assert built.info["compiler_version"] is None
    assert built.commands == [
        "hb_mapper checker --model-type onnx --model ./resnext50_32x4d.onnx --march bayes-e",
        f"hb_mapper makertbin --config {CONFIG} --model-type onnx"]
    assert built.primary == kit / CONFIG
    assert len(built.files) == 104 + 4 and all(  # + the device scripts: device_eval.py, preprocess.json, two .sh
        p.resolve().is_relative_to(kit.resolve()) for p in built.files)
    readme = (kit / "KIT.md").read_text()
    assert f"hb_mapper makertbin --config {CONFIG} --model-type onnx" in readme
    assert f"hrt_model_exec perf --model_file {PREFIX}/{PREFIX}.bin" in readme  # where makertbin writes it
    assert built.info["device_run"] == f"hrt_model_exec perf --model_file {PREFIX}/{PREFIX}.bin"
    # D-Robotics' rdk_model_zoo samples/vision/resnext/README.md (support matrix): "The only published variant
    # is 50_32x4d", on RDK X5; its published X5 figures are int8 189.61 FPS, top-1 76.00 (the registry's copy)
    assert "- resnext50_32x4d: RDK X5 (Bayes-e BPU), int8, top-1 76.0, 189.61 FPS, timm weights" in readme
    assert "is not among them" not in readme
    note = (kit / "CALIBRATION.md").read_text()  # generated images: said plainly, with the way out
    assert "GENERATED images (100, seed 0" in note and "calib_data=DIR" in note
    assert not (kit / PREFIX).exists()  # no .bin is ever written without hb_mapper
    text = "\n".join(target.describe(job, built))
    assert "the compiler was not run" in text
    assert all(f"$ {c}" in text for c in built.commands)
    assert target.load(job, built) is None


def test_options_reach_the_config(tmp_path, canonical, no_hb_mapper):
    target, job = make_job(tmp_path, canonical, march="bernoulli2", input_type_rt="rgb", compile_mode="bandwidth",
                           optimize_level="O2", calib_images=3, calibration_type="max")
    _, built = build(target, job)
    assert failed(built) == []
    cfg = yaml.safe_load((job.stage / "resnext50_32x4d_config.yaml").read_text())
    assert cfg["model_parameters"]["march"] == "bernoulli2"
    assert cfg["model_parameters"]["output_model_file_prefix"] == "resnext50_32x4d_224x224_rgb"
    assert (cfg["input_parameters"]["input_type_rt"], cfg["input_parameters"]["input_layout_rt"]) == ("rgb", "NHWC")
    assert cfg["compiler_parameters"]["compile_mode"] == "bandwidth"
    assert cfg["compiler_parameters"]["optimize_level"] == "O2"
    assert cfg["calibration_parameters"]["calibration_type"] == "max"
    assert len(list((job.stage / "calibration_data_rgb_f32").glob("*.rgbchw"))) == 3
    assert built.commands[0].endswith("--march bernoulli2")


def test_kit_checks_catch_a_broken_config(tmp_path, canonical, no_hb_mapper):
    target, job = make_job(tmp_path, canonical, calib_images=2)
    build(target, job)
    path = job.stage / CONFIG
    cfg = yaml.safe_load(path.read_text())
    cfg["input_parameters"]["scale_value"] = "0.0171 0.0175 0.0174"  # rounded too far: off by more than 1e-6
    cfg["input_parameters"]["mean_value"] = "123.675 116.28 103.53 0"
    cfg["calibration_parameters"]["cal_data_dir"] = "/data/calibration"
    path.write_text(yaml.safe_dump(cfg))
    bad = {c.name for c in config_checks(path, job) if not c.passed}
    assert bad == {"hb_mapper scale_value * std * 255 == 1", "hb_mapper mean_value == mean * 255",
                   "hb_mapper cal_data_dir is the kit's calibration folder"}
    cfg["compiler_parameters"]["debug"] = "False"
    del cfg["model_parameters"]["march"]
    path.write_text(yaml.safe_dump(cfg))
    bad = [c for c in config_checks(path, job) if not c.passed]
    assert len(bad) == 1 and "model_parameters.march: missing" in bad[0].detail
    assert "compiler_parameters.debug: expected bool, got str" in bad[0].detail


@pytest.mark.parametrize("overrides, words", [
    ({"batch": 2}, "target.batch=2"),
    ({"march": "bayes-x"}, "target.march=bayes-x: choose one of bayes-e, bayes, bernoulli2"),
    ({"input_type_rt": "yuv420"}, "target.input_type_rt=yuv420: choose one of nv12, yuv444, rgb, bgr"),
    ({"optimize_level": "O4"}, "target.optimize_level=O4"),
    ({"calib_images": 0}, "target.calib_images=0"),
])
def test_bad_options_are_user_errors(overrides, words):
    with pytest.raises(UserError) as e:
        get_target("bpu").check_options(options(**overrides), "int8")
    assert words in str(e.value) and "\n" not in str(e.value)


# --- contract with a FAKE hb_mapper ------------------------------------------------------------

FAKE_HB_MAPPER = r'''#!{python}
# fake_hb_mapper: a FAKE stand-in for Horizon's hb_mapper, used only by these tests. It checks the
# command line, the config yaml and the calibration files as hb_mapper's documented contract states
# them, logs its argv, and writes files named as hb_mapper's outputs (it compiles nothing).
import json, os, pathlib, sys
import numpy as np, onnx, yaml

if sys.argv[1:] == ["--version"]:
    print("fake_hb_mapper, version 0.0 (a FAKE hb_mapper for these tests)", file=sys.stderr)
    sys.exit(0)
with open(os.environ["FAKE_HB_MAPPER_LOG"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\n")

def fail(msg):
    print("fake_hb_mapper: " + msg)
    sys.exit(1)

def onnx_input(path):
    g = onnx.load(path, load_external_data=False).graph
    return g.input[0].name, [d.dim_value for d in g.input[0].type.tensor_type.shape.dim]

args = sys.argv[1:]
if args[:1] == [os.environ.get("FAKE_HB_MAPPER_FAIL")]:
    fail(args[0] + " failed: unsupported op (asked to fail)")
if args[:1] == ["checker"]:
    if len(args) != 7 or args[1:3] != ["--model-type", "onnx"] or args[3] != "--model" or args[5] != "--march":
        fail(f"usage: hb_mapper checker --model-type onnx --model X --march M; got {{args}}")
    if args[6] not in ("bayes-e", "bayes", "bernoulli2") or not pathlib.Path(args[4]).is_file():
        fail(f"bad march or model: {{args}}")
    name, dims = onnx_input(args[4])
    if len(dims) != 4 or dims[0] != 1 or 0 in dims:
        fail(f"{{name}} {{dims}}: not a static batch-1 NCHW input")
    pathlib.Path("hb_mapper_checker.log").write_text("checker ok\n")
    print("fake_hb_mapper: checker ok")
    sys.exit(0)
if args[:1] != ["makertbin"] or len(args) != 5 or args[1] != "--config" or args[3:] != ["--model-type", "onnx"]:
    fail(f"usage: hb_mapper makertbin --config Y --model-type onnx; got {{args}}")
cfg = yaml.safe_load(open(args[2]))
sections = {{"model_parameters", "input_parameters", "calibration_parameters", "compiler_parameters"}}
if set(cfg) != sections:
    fail(f"sections {{sorted(cfg)}}")
m, i, c = cfg["model_parameters"], cfg["input_parameters"], cfg["calibration_parameters"]
name, dims = onnx_input(m["onnx_model"])
if i["input_name"] != name or i["input_shape"] != "x".join(map(str, dims)):
    fail(f"input {{i['input_name']}} {{i['input_shape']}} does not match the ONNX ({{name}} {{dims}})")
if i["norm_type"] != "data_mean_and_scale" or len(i["mean_value"].split()) != 3 or len(i["scale_value"].split()) != 3:
    fail("normalisation")
files = sorted(pathlib.Path(c["cal_data_dir"]).iterdir())
size = int(np.prod(dims)) * 4
if not files or any(f.stat().st_size != size for f in files) or c["cal_data_type"] != "float32":
    fail(f"calibration files must be float32 {{dims}} ({{size}} bytes each)")
if os.environ.get("FAKE_HB_MAPPER_NO_BIN"):
    print("fake_hb_mapper: finished without a .bin")
    sys.exit(0)
out, prefix = pathlib.Path(m["working_dir"]), m["output_model_file_prefix"]
out.mkdir(parents=True, exist_ok=True)
for suffix in (".bin", "_original_float_model.onnx", "_optimized_float_model.onnx", "_calibrated_model.onnx",
               "_quantized_model.onnx"):
    (out / (prefix + suffix)).write_text("fake_hb_mapper output\n")
pathlib.Path("hb_mapper_makertbin.log").write_text("makertbin ok\n")
print(f"fake_hb_mapper: makertbin ok, {{len(files)}} calibration files")
'''


@pytest.fixture
def fake_hb_mapper(tmp_path, monkeypatch):
    """A FAKE hb_mapper first on PATH; returns the path of its argv log."""
    bin_dir = tmp_path / "fake_bin"
    bin_dir.mkdir()
    exe = bin_dir / "hb_mapper"
    exe.write_text(FAKE_HB_MAPPER.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "fake_hb_mapper_argv.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_HB_MAPPER_LOG", str(log))
    return log


def calls(log):
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


CHECKER = ["checker", "--model-type", "onnx", "--model", "./resnext50_32x4d.onnx", "--march", "bayes-e"]
MAKERTBIN = ["makertbin", "--config", CONFIG, "--model-type", "onnx"]


def test_hb_mapper_runs_both_steps_and_its_bin_is_picked_up(tmp_path, canonical, fake_hb_mapper):
    target, job = make_job(tmp_path, canonical, calib_images=4)
    _, built = build(target, job)
    kit = job.stage
    assert failed(built) == []
    assert calls(fake_hb_mapper) == [CHECKER, MAKERTBIN]
    assert {json.loads(line)["cwd"] for line in fake_hb_mapper.read_text().splitlines()} == {str(kit)}
    assert built.compiled is True and built.compiler == "hb_mapper (found on PATH)"
    printed = "fake_hb_mapper, version 0.0 (a FAKE hb_mapper for these tests)"  # the fake's --version, on stderr
    assert built.info["compiler_version"] == {"path": shutil.which("hb_mapper"), "version": printed,
                                             "printed": printed, "exit_code": 0}
    assert built.primary == kit / PREFIX / f"{PREFIX}.bin"
    assert built.info["outputs"] == sorted(f"{PREFIX}/{PREFIX}{s}" for s in (
        ".bin", "_calibrated_model.onnx", "_optimized_float_model.onnx", "_original_float_model.onnx",
        "_quantized_model.onnx"))
    for rel in (f"{PREFIX}/{PREFIX}.bin", "hb_mapper_makertbin.log", "build_logs/hb_mapper_checker.out",
                "build_logs/hb_mapper_makertbin.out"):
        assert kit / rel in built.files
    assert "makertbin ok, 4 calibration files" in (kit / "build_logs" / "hb_mapper_makertbin.out").read_text()
    text = "\n".join(target.describe(job, built))
    assert f"compiled with hb_mapper: {PREFIX}/{PREFIX}.bin" in text


def test_a_failing_checker_stops_the_build(tmp_path, canonical, fake_hb_mapper, monkeypatch):
    monkeypatch.setenv("FAKE_HB_MAPPER_FAIL", "checker")
    target, job = make_job(tmp_path, canonical, calib_images=2)
    _, built = build(target, job)
    assert calls(fake_hb_mapper) == [CHECKER]  # makertbin never ran
    bad = [c for c in built.checks if not c.passed]
    assert len(bad) == 1 and bad[0].name.startswith("`hb_mapper checker --model-type onnx")
    assert "exit 1" in bad[0].detail and "checker failed: unsupported op" in bad[0].detail
    assert built.compiled is False and not (job.stage / PREFIX).exists()
    assert "hb_mapper ran and failed" in "\n".join(target.describe(job, built))


def test_hb_mapper_without_a_bin_is_not_compiled(tmp_path, canonical, fake_hb_mapper, monkeypatch):
    monkeypatch.setenv("FAKE_HB_MAPPER_NO_BIN", "1")
    target, job = make_job(tmp_path, canonical, calib_images=2)
    _, built = build(target, job)
    assert calls(fake_hb_mapper) == [CHECKER, MAKERTBIN]
    assert failed(built) == [f"hb_mapper wrote {PREFIX}.bin: {PREFIX}/{PREFIX}.bin missing"]
    assert built.compiled is False and built.primary == job.stage / CONFIG


def test_the_fake_hb_mapper_rejects_bad_input(tmp_path, fake_hb_mapper):
    """The fake is strict: wrong arguments exit 1 with a message."""
    exe = str(Path(os.environ["PATH"].split(os.pathsep)[0]) / "hb_mapper")
    for argv in (["checker", "--model", "x.onnx"], ["makertbin", "--config", "x.yaml"]):
        run = subprocess.run([exe, *argv], cwd=tmp_path, capture_output=True, text=True)
        assert run.returncode == 1 and run.stdout.startswith("fake_hb_mapper: ")


def test_the_readme_warns_for_a_variant_the_vendor_has_not_published(tmp_path, canonical, no_hb_mapper):
    """Only resnext50_32x4d has published BPU results (rdk_model_zoo's ResNeXt sample: one variant, on X5):
    a bigger variant's kit says so, with its size."""
    from zoo.registry.loader import load_registry
    from zoo.targets.bpu import vendor_results, write_readme

    assert sorted(vendor_results()) == ["resnext50_32x4d"]
    _, job = make_job(tmp_path, canonical)
    big = load_registry().variants["resnext101_32x8d"]
    readme = write_readme(dataclasses.replace(job, variant=big), [(["checker"], "x.out")], "p", "m.onnx").read_text()
    assert "**resnext101_32x8d is not among them.**" in readme and "88.8M parameters" in readme
    assert "- resnext50_32x4d: RDK X5 (Bayes-e BPU), int8" in readme
