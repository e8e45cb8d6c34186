"""Malformed overrides for every command, generated: each is accepted (and then typed as the schema says)
or refused with one line (a UserError, the CLI's exit 2), before any work and without writing anything.

The property runs in-process on the layer every command line and API call goes through
(``zoo.config.overrides`` and ``zoo.config.check``); a sample of whole ``python -m zoo`` runs checks
the exit code, stderr and the working folder as a user sees them.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from typing import List

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from zoo.config.check import composed
from zoo.config.overrides import check_composition, check_overrides
from zoo.config.schema import ZooConfig
from zoo.errors import UserError
from zoo.registry.loader import conf_dir
from zoo.targets.onnx_rt import OnnxOptions

# each command with the overrides that make it otherwise valid
COMMANDS = {
    "list": [], "lookup": ["model=resnext50_32x4d"], "results": [], "gc": [], "report": [],
    "convert": ["model=resnext50_32x4d", "weights=random"], "fetch": ["model=resnext50_32x4d"],
    "validate": ["model=resnext50_32x4d"], "calib": ["target=vacc"],
    "publish": ["model=resnext50_32x4d", "hub=local"], "bench": ["model=resnext50_32x4d"],
}
TARGET_NAMES = ", ".join(sorted(p.stem for p in (conf_dir() / "target").glob("*.yaml")))  # the config folder's own list
ROOT_KEYS = [f.name for f in dataclasses.fields(ZooConfig) if f.name not in ("defaults", "command")]
BOOL_KEYS = {f.name for f in dataclasses.fields(ZooConfig) if f.type in (bool, "bool")}


def _flat(cls, prefix: str) -> List[str]:
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.default_factory() if f.default_factory is not dataclasses.MISSING else None):
            out += _flat(f.default_factory, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


KEYS = st.one_of(
    st.sampled_from(ROOT_KEYS),
    st.sampled_from(_flat(OnnxOptions, "target.")),
    st.sampled_from(["model.input.size", "model.arch.cardinality", "model.weights.0.tag", "model.name",
                     "hub.retries", "hub.root", "hydra/launcher", "hydra.job.chdir", "~seed", "+extra"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12),
)
VALUES = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", "null", "true", "no", "maybe", "nah", "[1]", "[a,b]", "{a:1}", "a,b", "range(1,5)",
                     "glob(*)", "interval(0,1)", "${nope}", "${oc.env:UNSET_ZOO_VAR}", "../../../ESCAPED",
                     "/etc/passwd", "/dev/null", "a;rm -rf /", "$(id)", "`id`", "x|y", "'quoted'", "\"dq\"",
                     "\\", "é☃漢字", "a" * 300, "0", "-1", "1e99"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
)


def _precheck(command: str, words: List[str]):
    """What ``python -m zoo COMMAND *words`` runs before Hydra: the composed config, or a UserError."""
    checked = check_overrides(words)
    check_composition(command, checked)  # sweeps without -m are refused here
    return composed(command, checked, conf_dir())


# ~0.4 s an example (Hydra composes twice); no example database, no explain phase: CI stays under a minute
@settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(command=st.sampled_from(sorted(COMMANDS)), key=KEYS, value=VALUES)
def test_malformed_overrides_are_typed_or_one_line(tmp_path_factory, monkeypatch, command, key, value):
    work = tmp_path_factory.mktemp("fuzz")
    monkeypatch.chdir(work)
    word = f"{key}={value}" if not key.startswith("~") else key
    try:
        cfg = _precheck(command, [*COMMANDS[command], f"out_dir={work / 'out'}", word])
    except UserError as e:
        message = str(e)
        assert message.strip() and "\n" not in message and "Traceback" not in message, message
    else:
        if key in BOOL_KEYS:  # item 8: a word that is not a boolean never counts as true
            assert isinstance(cfg[key], bool)
            assert value.lower() in ("true", "false", "yes", "no", "on", "off", "y", "n", "1", "0")
        if key in ROOT_KEYS and cfg[key] is not None and key not in ("model", "source", "target", "precision", "hub"):
            want = {int: int, float: (int, float), str: str, bool: bool}
            hint = {f.name: f.type for f in dataclasses.fields(ZooConfig)}[key]
            types = [t for name, t in want.items() if name.__name__ in str(hint) and "List" not in str(hint)]
            assert not types or isinstance(cfg[key], types[0]), (key, cfg[key])
    assert sorted(os.listdir(work)) == [], "nothing is written by the checks"


# A sample of whole runs, as the probe ran them: exit 2, one line, no traceback, nothing written.
SAMPLE = [
    ("convert", "seed=abc"), ("convert", "force=nah"), ("convert", "target.nonexistent=1"),
    ("convert", "hydra/launcher=nope"), ("convert", "~nonexistent"), ("convert", "model=range(1,5)"),
    ("convert", "seed=${oc.env:UNSET_ZOO_VAR}"), ("convert", "out_dir=[a]"), ("convert", "target.opset=0"),
    ("convert", "model.input.size=0"), ("validate", "eval_batch=0"), ("calib", "target.dynamic_batch=maybe"),
    ("publish", "hub.retries=x"), ("results", "format=json,csv"), ("gc", "stale_hours=-1"),
    ("lookup", "model=123"), ("fetch", "download_timeout=0"), ("report", "report_file=/dev/null"),
    ("bench", "batches=0"), ("bench", "threads=-1"), ("bench", "stability=abc"), ("bench", "pick=fastest"),
]


@pytest.mark.parametrize("command, word", SAMPLE)
def test_whole_runs_refuse_in_one_line(tmp_path, command, word):
    start = time.monotonic()  # the test's own ZOO_CACHE (conftest) is outside tmp_path, the working directory
    proc = subprocess.run([sys.executable, "-m", "zoo", command, *COMMANDS[command], "out_dir=out", word],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and proc.stdout == ""
    assert word.split("=", 1)[0].lstrip("~") in lines[0] or "model" in word, lines[0]
    assert sorted(os.listdir(tmp_path)) == [], "nothing written, not even out_dir"
    assert took < 15, f"refused after {took:.1f} s: the checks run before any work"


@pytest.mark.parametrize("word, extra", [
    ("-cp", "/etc"), ("--shell-completion", None), ("--experimental-rerun", "x.pkl"),
])
def test_hydra_flags_refuse_in_one_line(tmp_path, word, extra):
    args = [sys.executable, "-m", "zoo", "convert", "model=resnext50_32x4d", word] + ([extra] if extra else [])
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not os.listdir(tmp_path)


def test_boolean_words_follow_hydra_and_no_is_false(tmp_path):
    """``force=no`` published a failed artifact before: it is False now, and ``force=nah`` is refused."""
    for word, want in (("no", False), ("false", False), ("yes", True), ("true", True)):
        assert _precheck("publish", ["model=resnext50_32x4d", "hub=local", f"force={word}"]).force is want
    with pytest.raises(UserError, match=r"^force=nah: expected true or false$"):
        _precheck("publish", ["model=resnext50_32x4d", "hub=local", "force=nah"])
    with pytest.raises(UserError, match=r"^target.dynamic_batch=maybe: expected true or false$"):
        _precheck("convert", ["model=resnext50_32x4d", "target.dynamic_batch=maybe"])


@pytest.mark.parametrize("words, flags, needle", [
    (["model=resnext50_32x4d,resnext101_32x8d"], [], "is a sweep (one job per value): add -m"),
    (["model=resnext50_32x4d", "target=onnx,nope"], ["-m"], "unknown target 'nope': choose one of " + TARGET_NAMES),
    (["model=resnext50_32x4d", "seed=range(0,3)", "eval_batch=0"], ["-m"], "eval_batch=0"),
    (["model=resnext50_32x4d", "seed=1,abc"], ["-m"], "seed=abc: expected an integer"),
])
def test_sweeps_are_checked_per_value(words, flags, needle):
    with pytest.raises(UserError) as e:
        check_composition("convert", check_overrides(words), flags)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_sweep_of_good_values_passes():
    check_composition("convert", check_overrides(["model=resnext50_32x4d", "seed=1,2", "target=onnx,openvino"]),
                      ["-m"])  # every value fine: no error
