"""mindir target: real MindSpore (CPU) in child processes, compared with timm's own outputs.

The weights are timm state_dicts under their own names (the canonical naming), with BN statistics
replaced by seeded noise so a swapped gamma/beta or mean/variance would show in the outputs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import zoo
from zoo.converters.sources import get_adapter
from zoo.errors import UserError
from zoo.registry.loader import load_registry
from zoo.registry.query import effective_input, resolve_variant, select_weights
from zoo.targets import get_target
from zoo.targets import mindir as mindir_module
from zoo.targets.base import TargetJob
from zoo.targets.mindir import MindirTarget, StateMismatchError, call_worker, mindspore_version, worker_env
from zoo.validators.numerics import compare

needs_mindspore = pytest.mark.skipif(mindspore_version() is None, reason="mindspore is not installed")
DEEP_SIZE = 232
BATCH = 3  # rows of every parity input: a static batch of 2 pads the last chunk, a dynamic one takes 3


def target_options(**overrides: Any) -> Dict[str, Any]:
    conf = OmegaConf.load(Path(zoo.__file__).parent / "conf" / "target" / "mindir.yaml")
    return {**OmegaConf.to_container(conf, resolve=True), **overrides}


def perturb_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Seeded BN statistics and affine terms far from their defaults."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)


class Case:
    """A timm model with fresh seeded weights, its canonical npz and its outputs on seeded inputs."""

    def __init__(self, variant_name: str, folder: Path, seed: int, size: int | None = None) -> None:
        self.reg = load_registry()
        self.variant = resolve_variant(self.reg, variant_name)
        self.weights = select_weights(self.reg, self.variant, "timm", None)
        adapter = get_adapter("timm")
        model = adapter.fresh(self.variant, self.weights, seed)
        perturb_batchnorm(model, seed)
        self.state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()
                      if not k.endswith("num_batches_tracked")}
        self.state_path = folder / f"{variant_name}.npz"
        np.savez(self.state_path, **self.state)
        self.size = size or effective_input(self.variant, self.weights).size
        self.x = np.random.default_rng(seed).standard_normal((BATCH, 3, self.size, self.size)).astype(np.float32)
        self.ref = adapter.run(model, self.x)

    def job(self, folder: Path, weights=None, state_path: Path | None = None, **options: Any) -> TargetJob:
        weights = weights or self.weights
        opts = target_options(**options)
        stage, work = folder / "stage", folder / "stage" / ".work"
        work.mkdir(parents=True)
        return TargetJob(
            variant=self.variant, weights=weights, precision="fp32",
            input=replace(effective_input(self.variant, weights), size=self.size),
            options=opts, onnx_path=folder / "canonical.onnx", spec=MindirTarget().onnx_spec(opts, "fp32"),
            stage=stage, work=work, seed=0, state_path=state_path or self.state_path,
        )

    def n_values(self) -> int:
        """Every float of the state: learned parameters and BN running statistics."""
        return sum(int(a.size) for a in self.state.values())


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Case:
    return Case("resnext50_32x4d", tmp_path_factory.mktemp("plain"), seed=1)


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> Case:
    # 232 px: the feature maps reach layer3 and layer4 at odd sizes (29, 15), so the avg-pool shortcut's
    # ceil_mode / count_include_pad=False edge windows are compared with timm, not only even maps
    return Case("resnext50d_32x4d", tmp_path_factory.mktemp("deep"), seed=2, size=DEEP_SIZE)


def build(job: TargetJob):
    target = get_target("mindir")
    assert isinstance(target, MindirTarget) and target.needs_state
    target.check_options(job.options, job.precision)
    built = target.compile(job, target.prepare(job))
    failed = [c for c in built.checks if not c.passed]
    assert not failed, failed
    return target, built


def assert_fp32_parity(ref: np.ndarray, out: np.ndarray) -> None:
    p = compare(ref, out, "fp32")
    assert p.passed, p
    assert p.cosine >= 0.99999 and p.max_abs <= 1e-4 * p.ref_scale, p
    assert p.top1_agreement == 1.0


@needs_mindspore
def test_plain_stem_conv_shortcut_static_batch(plain, tmp_path):
    job = plain.job(tmp_path, dynamic_batch=False, batch=2)
    job.parity_sets = {"first": plain.x[:1], "rest": plain.x[1:]}  # run by the export's own worker process
    target, built = build(job)
    assert sorted(built.outputs) == ["first", "rest"]
    assert_fp32_parity(plain.ref, np.concatenate([built.outputs["first"], built.outputs["rest"]]))
    mindir = job.stage / "model.mindir"
    assert built.compiled and built.primary == mindir and built.files == [mindir]
    assert built.compiler == f"mindspore {mindspore_version()}"
    # the float32 weights dominate the file: 4 bytes per parameter plus a small graph
    assert 4 * plain.n_values() < mindir.stat().st_size < 4 * plain.n_values() * 1.02
    assert mindir.stat().st_mode & 0o777 == 0o644  # MindSpore's 0400 made ordinary
    assert built.info["input_shape"] == [2, 3, 224, 224] and built.info["batch"] == 2
    assert built.info["parameters"] == plain.n_values() == 25_097_128  # 25,028,904 learned + BN statistics
    assert built.info["softmax"] is False
    checks = {c.name: c for c in built.checks}
    assert "[2, 3, 224, 224]" in checks["mindir input shape"].detail
    assert checks["weights mapped"].detail.startswith(f"{len(plain.state)} canonical arrays onto {len(plain.state)}")
    out = target.load(job, built)(plain.x)  # 3 rows through a batch-2 graph: two chunks, the last padded
    assert out.shape == (BATCH, 1000)
    assert_fp32_parity(plain.ref, out)
    summary = " ".join(target.describe(job, built))
    assert "static batch" in summary and "[2, 3, 224, 224]" in summary and "logits" in summary


@needs_mindspore
def test_deep_stem_avgpool_shortcut_dynamic_batch(deep, tmp_path):
    job = deep.job(tmp_path)  # the yaml's default: dynamic batch
    assert job.options["dynamic_batch"] is True
    target, built = build(job)
    assert built.info["input_shape"] == [-1, 3, DEEP_SIZE, DEEP_SIZE] and built.info["batch"] == "dynamic"
    assert built.info["parameters"] == deep.n_values() == 25_116_488  # 25,048,136 learned + BN statistics
    out = target.load(job, built)(deep.x)  # batch 3 in one call
    assert_fp32_parity(deep.ref, out)
    assert "dynamic batch" in " ".join(target.describe(job, built))


@needs_mindspore
def test_probability_sources_get_a_softmax(deep, tmp_path):
    probs_weights = select_weights(deep.reg, deep.variant, "ppcls", None)  # PaddleClas publishes probabilities
    assert probs_weights.output.value == "probs"
    job = deep.job(tmp_path, weights=probs_weights)
    target, built = build(job)
    assert built.info["softmax"] is True
    out = target.load(job, built)(deep.x[:1])  # one row: the dynamic batch also takes 1
    assert out.shape == (1, 1000)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    expected = torch.softmax(torch.from_numpy(deep.ref[:1]), dim=1).numpy()
    assert_fp32_parity(expected, out)
    assert "softmax probabilities" in " ".join(target.describe(job, built))


@needs_mindspore
def test_weights_that_do_not_fit_name_the_keys(plain, tmp_path):
    state = dict(plain.state)
    del state["layer2.1.conv2.weight"]
    state["fc.bias"] = np.zeros(999, np.float32)
    state["head.extra"] = np.zeros(3, np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **state)
    job = plain.job(tmp_path, state_path=bad)
    with pytest.raises(StateMismatchError) as err:
        MindirTarget().compile(job, job.onnx_path)
    msg = str(err.value)
    assert "1 missing: layer2.1.conv2.weight" in msg
    assert "1 unexpected: head.extra" in msg
    assert "1 wrong shape: fc.bias (999,) (expected (1000,))" in msg
    assert not (job.stage / "model.mindir").exists()


@needs_mindspore
def test_network_widths_match_timm(tmp_path):
    import timm

    reg = load_registry()
    names = ["resnext50_32x4d", "resnext50d_32x4d", "resnext101_32x8d"]
    archs = {n: mindir_module.arch_request(resolve_variant(reg, n).arch) for n in names}
    report = call_worker("shapes", {"archs": archs}, tmp_path, timeout=600)
    for n in names:
        with torch.device("meta"):  # shapes only: no memory, no init time
            sd = timm.create_model(n, pretrained=False).state_dict()
        want = {k: list(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
        assert report["shapes"][n] == want, n
    assert report["shapes"]["resnext101_32x8d"]["layer3.0.conv2.weight"] == [1024, 32, 3, 3]  # width 8 * 32 * 4
    assert report["shapes"]["resnext50d_32x4d"]["conv1.3.weight"] == [32, 32, 3, 3]


def test_without_mindspore_compile_leaves_a_kit_that_builds(plain, tmp_path, monkeypatch):
    monkeypatch.setattr(mindir_module, "mindspore_version", lambda: None)
    job = plain.job(tmp_path, dynamic_batch=False, batch=4)
    target = MindirTarget()
    built = target.compile(job, target.prepare(job))
    request, weights = job.stage / "export.json", job.stage / "weights.npz"
    assert not built.compiled and built.compiler == "mindspore (not installed)"
    assert built.primary == request and sorted(built.files) == sorted([request, weights])
    assert weights.read_bytes() == plain.state_path.read_bytes()
    assert all(c.passed for c in built.checks)
    spec = json.loads(request.read_text())
    assert spec["state"] == "weights.npz" and spec["out"] == "model.mindir" and spec["batch"] == 4
    assert spec["arch"] == {"layers": [3, 4, 6, 3], "cardinality": 32, "base_width": 4, "stem": "plain",
                            "stem_width": 32, "shortcut": "conv", "num_classes": 1000}
    assert target.load(job, built) is None
    summary = "\n".join(target.describe(job, built))
    assert "mindspore (not installed)" in summary and "mindir_worker export export.json" in summary
    if mindspore_version() is None:
        return
    # the kit's own command, as a user runs it in the kit folder, writes the MindIR
    cmd = built.commands[-1].split("#")[0].split()
    proc = subprocess.run([sys.executable, *cmd[1:]], cwd=job.stage, env=worker_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((job.stage / "export-report.json").read_text())
    assert report["input_shapes"] == [[4, 3, 224, 224]]
    assert (job.stage / "model.mindir").stat().st_size > 4 * plain.n_values()


@needs_mindspore
def test_a_crashing_worker_is_a_clear_error(tmp_path):
    garbage = tmp_path / "model.mindir"
    garbage.write_bytes(b"not a mindir file" * 64)
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(RuntimeError) as err:
        call_worker("run", {"model": str(garbage), "input": str(tmp_path / "x.npy"),
                            "output": str(tmp_path / "y.npy"), "batch": None}, tmp_path, timeout=300)
    msg = str(err.value)
    assert "MindSpore worker 'run' failed (exit status 1)" in msg and "last stderr lines" in msg
    assert "Traceback" in msg or "Error" in msg.split("last stderr lines", 1)[1]
    assert not (tmp_path / "y.npy").exists()


def test_only_fp32_is_offered():
    with pytest.raises(UserError, match="fp32 only, not int8"):
        MindirTarget().check_options(target_options(), "int8")


def test_this_process_never_imported_mindspore():
    # the pipeline may hold Paddle, whose oneDNN symbols clash with MindSpore's: every test above ran
    # MindSpore through the target, and all of it stayed in child processes
    assert MindirTarget.needs_state
    assert not [m for m in sys.modules if m == "mindspore" or m.startswith("mindspore.")]
