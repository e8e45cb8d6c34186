"""`python -m zoo -m publish ...`: a Hydra sweep publishes one repository per artifact, to a folder mirror
and, through huggingface_hub, to the PROTOCOL FAKE Hub in tests/hf_protocol_fake.py. Two real artifacts
(weights=random, onnx and openvino) are built once by a real `-m convert` sweep."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest
from conftest import run_zoo
from test_publish import TOKEN, actions, hf_env, hub_requests

from hf_protocol_fake import FakeHub

ART = ["model=resnext50_32x4d", "source=torchvision"]
TARGETS = ("onnx", "openvino")
ORG = "zoo-sweep"
NAME = "resnext50_32x4d-torchvision-IMAGENET1K_V1"
LIBRARY = {"onnx": "onnx", "openvino": "openvino"}
GENERATED = {"manifest.json", "config.json", "README.md"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact(out: Path, target: str) -> Tuple[Path, Dict]:
    folder = out / "resnext50_32x4d" / "torchvision" / "IMAGENET1K_V1" / target
    return folder, json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    proc = run_zoo("-m", "convert", *ART, f"target={','.join(TARGETS)}", "weights=random", f"out_dir={out}",
                   "progress=false", cwd=tmp_path_factory.mktemp("cwd"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for t in TARGETS:
        assert artifact(out, t)[1]["status"] == "passed"
    return out


def sweep(out: Path, cwd: Path, *hub: str, env: dict | None = None):
    return run_zoo("-m", "publish", *ART, f"target={','.join(TARGETS)}", f"out_dir={out}", "progress=false", *hub,
                   env=env, cwd=cwd)


def snapshot(root: Path) -> Dict[str, Tuple[int, int, str]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, sha256(p.read_bytes()))
            for p in root.rglob("*") if p.is_file()}


def test_local_sweep_writes_one_repo_per_artifact_and_a_second_run_changes_nothing(built, tmp_path):
    from huggingface_hub import ModelCard

    root = tmp_path / "mirror"
    hub = ["hub=local", f"hub.root={root}", f"hub.org={ORG}"]
    first = sweep(built, tmp_path, *hub)
    assert first.returncode == 0, first.stdout + first.stderr
    repos = sorted(p.name for p in (root / ORG).iterdir() if not p.name.startswith("."))
    assert repos == [f"{NAME}-{t}" for t in TARGETS]
    for t in TARGETS:
        folder, manifest = artifact(built, t)
        repo = root / ORG / f"{NAME}-{t}"
        names = {f["name"] for f in manifest["artifact"]["files"]}
        on_disk = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
        assert on_disk == names | GENERATED | {".zoo-publish.json"}, t
        for f in manifest["artifact"]["files"]:
            data = (repo / f["name"]).read_bytes()
            assert (len(data), sha256(data)) == (f["size"], f["sha256"]), (t, f["name"])
        # no local path in a weights=random build: the public manifest is the build's own, byte for byte
        assert (repo / "manifest.json").read_bytes() == (folder / "manifest.json").read_bytes()
        card = ModelCard((repo / "README.md").read_text())
        assert card.data.library_name == LIBRARY[t] and t in card.data.tags
        assert card.data.to_dict()["model-index"][0]["name"] == f"{NAME}-{t}"
        assert json.loads((repo / "config.json").read_text())["model_file"] == manifest["artifact"]["primary"]
        log = json.loads((repo / ".zoo-publish.json").read_text())
        (commit,) = log["commits"]
        assert commit["manifest_sha256"] == sha256((repo / "manifest.json").read_bytes())
        assert commit["manifest_sha256"] in commit["message"] and f" {t} fp32 " in commit["message"]
        assert f"published to local:{repo}" in first.stdout
    assert set(actions(first.stdout).values()) == {"add"}

    before = snapshot(root)
    second = sweep(built, tmp_path, *hub)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("unchanged on local:") == len(TARGETS)
    assert second.stdout.count("commit  none") == len(TARGETS)
    lines = re.findall(r"^  (add\*?|update|skip) ", second.stdout, re.M)
    assert lines and set(lines) == {"skip"}
    assert snapshot(root) == before


def test_hf_sweep_makes_one_commit_per_job_and_a_second_run_sends_nothing(built, tmp_path):
    hub_args = ["hub=hf", f"hub.org={ORG}"]
    with FakeHub(TOKEN) as hub:
        env = hf_env(hub, tmp_path / "hf-home")
        first = sweep(built, tmp_path, *hub_args, env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        commits = hub.calls("commit")
        assert [c.status for c in commits] == [200] * len(TARGETS)
        assert sorted(c.path.split("/api/models/")[1].rsplit("/commit/", 1)[0] for c in commits) == \
            [f"{ORG}/{NAME}-{t}" for t in TARGETS]
        for t in TARGETS:
            folder, manifest = artifact(built, t)
            repo_id = f"{ORG}/{NAME}-{t}"
            repo = hub.repos[repo_id]
            assert len(repo.commits) == 2  # the repo's initial commit, then exactly one from this job
            for f in manifest["artifact"]["files"]:
                assert sha256(hub.file_bytes(repo_id, f["name"])) == f["sha256"], (t, f["name"])
            assert set(repo.head["files"]) == {".gitattributes"} | GENERATED | {
                f["name"] for f in manifest["artifact"]["files"]}
            assert sha256(hub.file_bytes(repo_id, "manifest.json")) in repo.head["summary"]

        hub.requests.clear()
        second = sweep(built, tmp_path, *hub_args, env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        routes = [r.route for r in hub_requests(hub)]
        assert routes == ["create", "paths-info"] * len(TARGETS)
        lines = re.findall(r"^  (add\*?|update|skip) ", second.stdout, re.M)
        assert lines and set(lines) == {"skip"}
        assert all(len(hub.repos[f"{ORG}/{NAME}-{t}"].commits) == 2 for t in TARGETS)
