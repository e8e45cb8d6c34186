"""The plug-in contract: a target is one module plus one YAML, and nothing else in the package names a
target or a source.

The toy target below lives only in this test's temporary folder: a copy of the config tree with one more
``target/toy.yaml`` (ZOO_CONF) and a module on PYTHONPATH. Nothing under ``zoo/`` knows it, yet convert,
the typed options, calib, the memory gate, validation against the canonical model and the model card
all pick it up from its class.
"""
from __future__ import annotations

import ast
import json
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_zoo

ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = textwrap.dedent('''
    """A toy target: the canonical ONNX with its input scaled by ``gain`` in front, run by ONNX Runtime."""
    import shutil
    from dataclasses import dataclass
    from pathlib import Path

    from zoo import ort_session
    from zoo.config import bounds
    from zoo.targets.base import Built, CalibFormat, Check, Target
    from zoo.targets.options import ExportOptions


    @dataclass
    class ToyOptions(ExportOptions):
        gain: int = 1

        def __post_init__(self):
            super().__post_init__()
            bounds.at_least("target.gain", self.gain, 1, "give a positive whole gain")


    class ToyTarget(Target):
        name = "toy"
        options = ToyOptions
        tools = ("onnxruntime", "numpy")
        extra = "onnx"
        memory_factor, streamed_memory_factor = 1.5, 1.25
        calib_format = CalibFormat("npy", "toy_data", ".npy", True, True, "the toy's own npy folder",
                                   "toy-compiler --calib {data} --count {n}")
        hub_library = "toy-lib"
        has_runtime = True

        def prepare(self, job):
            return job.onnx_path

        def compile(self, job, prepared):
            out = job.stage / "model.toy"
            shutil.copyfile(prepared, out)
            return Built(files=[out], primary=out, compiled=True, compiler="toy 1.0",
                         checks=[Check("toy written", out.stat().st_size > 0, f"gain {job.options['gain']}")])

        def load(self, job, built):
            return ort_session.runner(built.primary)

        def usage_code(self, manifest, input_name, x):
            return {"imports": ["import toy"], "load": [f'model = toy.load("{manifest["artifact"]["primary"]}")'],
                    "score": [f"scores = model({x})[0]"]}
''')

TOY_YAML = textwrap.dedent('''
    defaults:
      - /_zoo_target/toy@_here_
      - _self_
    name: toy
    plugin: toy_target:ToyTarget
    opset: 17
    input_name: input
    output_name: output
    dynamic_batch: true
    batch: 1
    simplify: true
    precisions: [fp32]
    default_precision: fp32
    gain: 2
''')


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("toy")
    conf = root / "conf"
    shutil.copytree(ROOT / "zoo" / "conf", conf)
    (conf / "target" / "toy.yaml").write_text(TOY_YAML)
    (root / "toy_target.py").write_text(TOY_MODULE)
    return {"root": root, "env": {"ZOO_CONF": str(conf), "PYTHONPATH": str(root)}}


def one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_toy_target_from_a_test_config_converts_validates_and_publishes(toy, tmp_path):
    env, out = toy["env"], tmp_path / "out"
    proc = run_zoo("convert", "model=resnext50_32x4d", "source=torchvision", "target=toy", "weights=random",
                   "out_dir=out", "progress=false", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    folder = out / "resnext50_32x4d" / "torchvision" / "IMAGENET1K_V1" / "toy"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "passed" and m["artifact"]["primary"] == "model.toy"
    # the YAML's value reached the typed options and the job
    assert m["options"]["gain"] == 2 and m["options"]["plugin"] == "toy_target:ToyTarget"
    # parity of the toy's artifact against the canonical ONNX ran here, through its own load()
    sets = m["validation"]["target"]["parity"]["sets"]
    assert sets and all(s["passed"] for s in sets.values())
    assert {"onnxruntime", "numpy"} <= set(m["tools"])  # the class's tools are in the artifact's identity
    assert m["tools"]["numpy"] == np.__version__

    # a wrong type for the toy's own option: one line naming the key, exit 2
    bad = run_zoo("convert", "model=resnext50_32x4d", "target=toy", "target.gain=abc", "weights=random",
                  env=env, cwd=tmp_path)
    assert "target.gain" in one_error_line(bad)
    assert "target.gain=0" in one_error_line(run_zoo("convert", "model=resnext50_32x4d", "target=toy",
                                                     "target.gain=0", "weights=random", env=env, cwd=tmp_path))
    assert "toy" in run_zoo("--help", env=env).stdout

    # the model card takes the hub library and the usage snippet from the class
    hub = tmp_path / "hub"
    pub = run_zoo("publish", "model=resnext50_32x4d", "source=torchvision", "target=toy", "out_dir=out",
                  "progress=false", "hub=local", f"hub.root={hub}", "hub.org=t", env=env, cwd=tmp_path)
    assert pub.returncode == 0, pub.stderr
    card = next(hub.rglob("README.md")).read_text()
    assert "library_name: toy-lib" in card and 'model = toy.load("model.toy")' in card


def test_a_toy_targets_calibration_format_and_memory_factor_come_from_its_class(toy, tmp_path, monkeypatch):
    images = tmp_path / "images"
    for i, cls in enumerate(("a", "b")):
        (images / cls).mkdir(parents=True)
        Image.fromarray(np.full((40, 50, 3), 60 * i, np.uint8)).save(images / cls / f"{i}.jpg")
    proc = run_zoo("calib", "data=images", "target=toy", "model=resnext50_32x4d", "n=2", "out_dir=out",
                   env=toy["env"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = tmp_path / "out" / "calib" / "toy" / "toy_data"
    arrays = [np.load(f) for f in sorted(data.glob("*.npy"))]
    assert len(arrays) == 2 and all(a.shape == (3, 224, 224) and a.dtype == np.float32 for a in arrays)
    assert f"toy-compiler --calib {Path('out') / 'calib' / 'toy' / 'toy_data'} --count 2" in proc.stdout

    monkeypatch.setenv("ZOO_CONF", toy["env"]["ZOO_CONF"])
    monkeypatch.syspath_prepend(str(toy["root"]))
    from zoo import memory_gate

    weights = 100 * 2**20
    assert memory_gate.estimate_peak_bytes(weights, "toy") == memory_gate.BASE_BYTES + int(weights * 1.5)
    sys.modules.pop("toy_target", None)


# --- nothing outside a plug-in names a target or a source ---------------------------------------------


def _names_and_owners() -> tuple[set, dict]:
    from zoo.converters.sources import convertible, source_of
    from zoo.registry.loader import load_registry
    from zoo.targets import target_class, target_names

    owners = {n: target_class(n).__module__ for n in target_names()}
    owners.update({s: source_of(s).adapter.split(":")[0] for s in convertible()})
    return set(target_names()) | set(load_registry().sources), owners


def _namings(tree: ast.AST, names: set) -> list[tuple[int, str, str]]:
    """Where code keys a table by, branches on, or defaults to a target or source name: dict literals whose
    keys are mostly such names, comparisons with one, parameter defaults, and module-level tuples of them.
    (A name used in another sense stays allowed: the manifest's ``"onnx"`` section, a tool's
    ``--model-type onnx``, a Python package that shares a target's name.)"""
    def is_name(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            named = [k for k in keys if is_name(k)]
            if named and 2 * len(named) > len(keys):
                found += [(k.lineno, k.value, "table key") for k in named]
        elif isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                elts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                found += [(e.lineno, e.value, "comparison") for e in elts if is_name(e)]
        elif isinstance(node, ast.arguments):
            found += [(d.lineno, d.value, "default") for d in node.defaults + node.kw_defaults if d is not None and is_name(d)]
        elif isinstance(node, ast.Module):
            for stmt in node.body:
                value = getattr(stmt, "value", None)
                if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and isinstance(value, (ast.Tuple, ast.List, ast.Set)):
                    named = [e for e in value.elts if is_name(e)]
                    if len(named) >= 2:
                        found += [(e.lineno, e.value, "list") for e in named]
    return found


def test_nothing_outside_a_plugin_names_a_target_or_a_source():
    names, owners = _names_and_owners()
    assert {"onnx", "openvino", "mindir", "vacc", "bpu", "ixrt", "torchvision", "mindcv"} <= names
    problems = []
    for path in sorted((ROOT / "zoo").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for line, name, kind in _namings(ast.parse(path.read_text()), names):
            # a plug-in's own module, and the helper modules it alone uses (zoo/targets/mindir_worker.py ...)
            if owners.get(name) == module or module.startswith(f"{owners.get(name, '-')}_"):
                continue
            problems.append(f"{path.relative_to(ROOT)}:{line}: {kind} {name!r}")
    assert not problems, "\n".join(problems)


def test_the_check_catches_the_patterns_it_is_for():
    names = {"onnx", "vacc", "mindcv"}
    code = textwrap.dedent('''
        FACTORS = {"onnx": 6.0, "vacc": 2.0}
        KNOWN = ("onnx", "vacc")
        def f(target, source="mindcv"):
            if target == "vacc" or source in ("mindcv",):
                return {"onnx": 1}
            return manifest["onnx"], {"variant": 1, "source": 2, "onnx": 3}, ["--model-type", "onnx"]
    ''')
    kinds = sorted((name, kind) for _, name, kind in _namings(ast.parse(code), names))
    assert kinds == [("mindcv", "comparison"), ("mindcv", "default"), ("onnx", "list"), ("onnx", "table key"),
                     ("onnx", "table key"), ("vacc", "comparison"), ("vacc", "list"), ("vacc", "table key")]
