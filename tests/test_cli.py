"""`python -m zoo` as users run it: real subprocesses, real Hydra, checked output and exit codes."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.registry.loader import PACKAGE_CONF, load_registry


def zoo(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=120,
    )


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [x for x in proc.stderr.strip().splitlines() if x]
    assert 1 <= len(lines) <= 2, proc.stderr
    for n in needles:
        assert n in proc.stderr, (n, proc.stderr)


def test_list_json_has_a_row_per_checkpoint():
    proc = zoo("list", "format=json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    keys = {(r["variant"], r["source"], r["tag"]) for r in rows}
    assert len(keys) == len(rows) >= 37
    assert ("resnext101_32x8d", "torchvision", "IMAGENET1K_V1") in keys
    assert ("resnext101_32x32d", "ppcls", "wsl") in keys


def test_list_filters_and_formats(tmp_path):
    work = tmp_path / "work"  # beside the test's ZOO_CACHE, which the registry's snapshot goes into
    work.mkdir()
    proc = zoo("list", "filter=resnext101*", "source=ppcls", "format=csv", cwd=work)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["source"] for r in rows} == {"ppcls"}
    assert all(r["variant"].startswith("resnext101") for r in rows) and len(rows) == 8
    md = zoo("list", "filter=resnext50_32x4d", "format=markdown").stdout
    # one row per checkpoint of the variant, whatever the registry holds
    assert "| variant | source | tag |" in md
    assert md.count("| resnext50_32x4d |") == len(load_registry().variants["resnext50_32x4d"].weights) > 8
    table = zoo("list", "source=mmcls").stdout
    assert "resnext152_32x4d" in table and "ppcls" not in table
    assert list(work.iterdir()) == []  # list writes nothing into the working directory


def test_lookup_has_every_number_with_provenance():
    proc = zoo("lookup", "model=resnext101_32x8d", "format=json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["architecture"]["params_computed"] == 88791336
    rows = doc["rows"]
    assert all(r["doc_id"] and r["table"] and r["document"] for r in rows)
    by = {(r["kind"], r["source"], r["metric"], r["value"]) for r in rows}
    assert ("published", "mmcls", "top-1 accuracy", 79.27) in by
    assert ("ixrt fp16 bs32", "torchvision", "throughput", 825.78) in by
    assert ("vacc int8", "torchvision", "top-1 accuracy", 77.974) in by
    units = {r["unit"] for r in rows if r["metric"] == "complexity"}
    assert units == {"GMACs", "GFLOPs (as published)"}  # the convention is named
    ixrt = next(r for r in rows if r["kind"].startswith("ixrt"))
    assert "MR-V100" in ixrt["context"] and "IXUCA SDK" in ixrt["context"]


def test_lookup_by_alias_and_source_filter():
    proc = zoo("lookup", "model=resnext101_32x16d_wsl", "source=ppcls", "format=csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert {r["source"] for r in rows} == {"ppcls"}
    params = next(r for r in rows if r["metric"] == "params")
    assert params["value"] == "152.66" and "194.03M" in params["disputed"]


def test_lookup_table_names_documents():
    out = zoo("lookup", "model=resnext50_32x4d").stdout
    assert "25,028,904 params" in out
    assert "rdk_resnext: rdk_model_zoo" in out and "189.61" in out
    assert "disputed [published ppcls pretrained]: params_m" in out


@pytest.mark.parametrize(
    "args, needles",
    [
        (["lookup", "model=resnext50_32x4e"], ["unknown model 'resnext50_32x4e'", "did you mean resnext50_32x4d", "zoo list"]),
        (["lookup", "model=resnext152_64x4d", "source=timm"], ["not published by timm", "source=mindcv,ppcls"]),
        (["list", "format=xml"], ["unknown format 'xml'", "table|json|csv|markdown"]),
        (["list", "filter=["], ["malformed override 'filter=['"]),
        (["list", "source=paddle"], ["unknown source 'paddle'", "ppcls"]),
        (["frobnicate"], ["unknown command 'frobnicate'", "list"]),
        ([], ["usage: python -m zoo COMMAND"]),
        (["lookup"], ["lookup needs a variant"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needles):
    assert_user_error(zoo(*args), *needles)


def _site_registry(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(PACKAGE_CONF, conf)
    return conf


def test_broken_yaml_is_named(tmp_path):
    conf = _site_registry(tmp_path)
    (conf / "model" / "resnext50_64x4d.yaml").write_text("name: resnext50_64x4d\narch: {layers: [3, 4\n")
    proc = zoo("list", env={"ZOO_CONF": str(conf)})
    assert_user_error(proc, "broken YAML", "resnext50_64x4d.yaml")


@pytest.mark.parametrize(
    "edit, needles",
    [
        (("cardinality: 64", "cardinalty: 64"), ["resnext50_64x4d.yaml", "cardinalty"]),
        (("cardinality: 64", "cardinality: many"), ["resnext50_64x4d.yaml", "arch.cardinality"]),
        (("stem: plain", "stem: wide"), ["resnext50_64x4d.yaml", "arch.stem"]),
        (("    license: apache-2.0\n", ""), ["resnext50_64x4d.yaml", "missing", "license"]),
        (("doc: vastai_resnext", "doc: nowhere"), ["resnext50_64x4d.yaml", "unknown document 'nowhere'"]),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path, edit, needles):
    conf = _site_registry(tmp_path)
    path = conf / "model" / "resnext50_64x4d.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    assert_user_error(zoo("lookup", "model=resnext50_64x4d", env={"ZOO_CONF": str(conf)}), *needles)


def test_a_new_variant_is_one_yaml_file(tmp_path):
    conf = _site_registry(tmp_path)
    text = (conf / "model" / "resnext50_64x4d.yaml").read_text()
    (conf / "model" / "resnext26_32x4d.yaml").write_text(
        text.replace("resnext50_64x4d", "resnext26_32x4d").replace("[3, 4, 6, 3]", "[2, 2, 2, 2]")
    )
    proc = zoo("list", "filter=resnext26*", "format=json", env={"ZOO_CONF": str(conf)})
    assert proc.returncode == 0, proc.stderr
    assert [r["variant"] for r in json.loads(proc.stdout)] == ["resnext26_32x4d"]


def test_hydra_help_cfg_and_multirun(tmp_path):
    help_out = zoo("--help").stdout
    assert "Commands:" in help_out and "resnext101_32x8d" in help_out and "lookup" in help_out
    cfg = zoo("--cfg", "job", "lookup", "model=resnext50", "format=json")
    assert cfg.returncode == 0, cfg.stderr
    assert "name: resnext50_32x4d" in cfg.stdout and "format: json" in cfg.stdout
    multi = zoo("-m", "list", "filter=resnext152d*", "format=json,csv", cwd=tmp_path)
    assert multi.returncode == 0, multi.stderr
    assert "#0 : filter=resnext152d* format=json" in multi.stdout
    assert "#1 : filter=resnext152d* format=csv" in multi.stdout
    assert multi.stdout.count('"model_name": "ResNeXt152_vd_64x4d"') == 1  # the json job
    assert multi.stdout.count(",ResNeXt152_vd_64x4d,") == 1  # the csv job


def test_a_sweep_skips_combinations_the_registry_does_not_have(tmp_path):
    """Each missing (variant, source) is one 'skipped' line; the sweep runs every job and exits 0."""
    proc = zoo("-m", "convert", "model=resnext50d_32x4d,resnext152d_64x4d", "source=mmcls,torchvision",
               "weights=random", f"out_dir={tmp_path}", "progress=false")
    assert proc.returncode == 0, proc.stderr
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 4 and "resnext152d_64x4d is not published by torchvision" in proc.stderr
    assert "Traceback" not in proc.stderr and not any(tmp_path.iterdir())


@pytest.mark.parametrize("word, near", [("out=/tmp/x", "out_dir"), ("tagt=x", "tag"), ("zzz=1", None)])
def test_an_unknown_key_is_one_line_with_the_nearest_known_key(word, near):
    proc = zoo("convert", "model=resnext50_32x4d", word)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown key" in proc.stderr
    assert (f"did you mean {near}?" in proc.stderr) if near else "did you mean" not in proc.stderr


def test_a_sweep_fails_a_job_that_cannot_fetch_but_skips_a_missing_combination(tmp_path):
    """offline=true with an empty cache: the download is a failure of that job, not a skip."""
    proc = zoo("-m", "convert", "model=resnext50_32x4d,resnext152d_64x4d", "source=torchvision", "offline=true",
               f"out_dir={tmp_path}", "progress=false")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert sum(line.startswith("skipped: resnext152d_64x4d is not published by torchvision") for line in lines) == 1
    assert sum(line.startswith("job failed:") for line in lines) == 1
    assert "1 job(s) failed: model=resnext50_32x4d source=torchvision" in proc.stderr
