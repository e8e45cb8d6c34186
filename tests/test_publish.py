"""`zoo publish`: a real artifact (weights=random) to a folder mirror and, through huggingface_hub, to the
PROTOCOL FAKE Hub in tests/hf_protocol_fake.py; the generated config.json and model card checked against
the manifest and the registry."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_zoo

from hf_protocol_fake import RESET, FakeHub

ART = ["model=resnext50_32x4d", "source=torchvision", "target=onnx"]
REPO = "zoo-test/resnext50_32x4d-torchvision-IMAGENET1K_V1-onnx"  # what hub.org=zoo-test derives
TOKEN = "hf_zooPublishTestToken_5e1f0c9a7b3d"  # distinctive: grep finds it anywhere it leaks


def folder_of(out: Path) -> Path:
    return out / "resnext50_32x4d" / "torchvision" / "IMAGENET1K_V1" / "onnx"


def publish(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_zoo("publish", *ART, f"out_dir={out}", "progress=false", *extra, env=env)


def local(root: Path, *extra: str) -> list[str]:
    return ["hub=local", f"hub.root={root}", "hub.org=zoo-test", *extra]


def actions(stdout: str) -> dict[str, str]:
    """path -> add/update/skip/add* from the report's file lines."""
    return {m.group(2): m.group(1) for m in re.finditer(r"^  (add\*?|update|skip)\s+(\S+)\s", stdout, re.M)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


def registry_entry():
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    return reg, v, select_weights(reg, v, "torchvision", "IMAGENET1K_V1")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    proc = run_zoo("convert", *ART, "weights=random", f"out_dir={out}", "progress=false")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def art(built: Path, tmp_path: Path) -> Path:
    """A private copy of the artifact store (hard links: the manifest is only ever replaced, never edited)."""
    dst = tmp_path / "artifacts"
    shutil.copytree(built, dst, copy_function=os.link)
    return dst


@pytest.fixture(scope="module")
def published(built: Path, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("mirror")
    proc = publish(built, *local(root))
    assert proc.returncode == 0, proc.stderr
    return root / REPO, proc


def edit_manifest(out: Path, change) -> dict:
    from zoo.store import write_json

    path = folder_of(out) / "manifest.json"
    m = json.loads(path.read_text())
    change(m)
    write_json(path, m)
    return m


# ---------------------------------------------------------------- local mirror


def test_local_publish_writes_the_repo_layout_and_a_commit_naming_the_manifest(built, published):
    repo, proc = published
    art = folder_of(built)
    manifest = json.loads((art / "manifest.json").read_text())
    assert actions(proc.stdout) == {p: "add" for p in ("model.onnx", "manifest.json", "config.json", "README.md")}
    assert sorted(p.name for p in repo.iterdir()) == [".zoo-publish.json", "README.md", "config.json",
                                                       "manifest.json", "model.onnx"]
    model = manifest["artifact"]["files"][0]
    assert (repo / "model.onnx").stat().st_size == model["size"]
    assert sha256((repo / "model.onnx").read_bytes()) == model["sha256"]
    assert (repo / "manifest.json").read_bytes() == (art / "manifest.json").read_bytes()
    log = json.loads((repo / ".zoo-publish.json").read_text())
    manifest_sha = sha256((art / "manifest.json").read_bytes())
    (commit,) = log["commits"]
    assert log["head"] == commit["id"] and commit["parent"] is None
    assert manifest_sha in commit["message"] and commit["manifest_sha256"] == manifest_sha
    assert commit["files"] == {p: sha256((repo / p).read_bytes())
                               for p in ("model.onnx", "manifest.json", "config.json", "README.md")}
    assert sorted(commit["wrote"]) == ["README.md", "config.json", "manifest.json", "model.onnx"]
    assert f"commit  {commit['id']}" in proc.stdout


def test_config_json_holds_the_registry_preprocessing_labels_and_input(built, published):
    from zoo.labels import imagenet_labels
    from zoo.registry.query import effective_input

    repo, _ = published
    cfg = json.loads((repo / "config.json").read_text())
    manifest = json.loads((folder_of(built) / "manifest.json").read_text())
    _, v, w = registry_entry()
    spec = effective_input(v, w)
    assert cfg["input"] == {"name": manifest["onnx"]["input_name"], "shape": ["batch", 3, 224, 224], "dtype": "float32"}
    pre = cfg["preprocessing"]
    assert (pre["resize_short"], pre["crop_size"], pre["interpolation"]) == (256, 224, "bilinear")
    assert pre["mean"] == list(spec.mean) and pre["std"] == list(spec.std)
    assert (pre["color"], pre["layout"]) == ("RGB", "NCHW")
    assert cfg["output"]["semantics"] == "logits" and cfg["output"]["shape"] == ["batch", 1000]
    assert cfg["output"]["name"] == manifest["onnx"]["output_name"]
    assert cfg["num_labels"] == 1000 and len(cfg["id2label"]) == 1000
    assert [cfg["id2label"][str(i)] for i in range(1000)] == imagenet_labels()
    assert cfg["license"] == w.license == "bsd-3-clause"
    assert cfg["model_file"] == "model.onnx" and cfg["files"] == ["model.onnx"]


def test_card_front_matter_parses_and_its_metrics_are_the_manifests(built, published):
    from huggingface_hub import ModelCard

    repo, _ = published
    manifest = json.loads((folder_of(built) / "manifest.json").read_text())
    card = ModelCard((repo / "README.md").read_text())
    data = card.data.to_dict()
    assert data["library_name"] == "onnx" and data["license"] == "bsd-3-clause"
    assert data["datasets"] == ["imagenet-1k"] and data["pipeline_tag"] == "image-classification"
    assert {"resnext", "onnx", "fp32", "torchvision", "untrained"} <= set(data["tags"])
    (index,) = data["model-index"]
    assert index["name"] == REPO.split("/")[1]
    # weights=random: no published accuracy is claimed for this file, only what was measured on it
    assert all(r["dataset"]["type"] == "zoo-parity-inputs" for r in index["results"])
    got = {(r["dataset"]["config"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]}
    sets = manifest["validation"]["parity"]["sets"]
    assert got == {(s, k): sets[s][f] for s in sets
                   for k, f in (("cosine_similarity", "cosine"), ("max_abs_error", "max_abs"),
                                ("top1_agreement", "top1_agreement"))}
    assert card.text.lstrip().startswith("> **UNTRAINED.**")
    assert manifest["weights"]["sha256"] in card.text
    assert manifest["artifact"]["files"][0]["sha256"] in card.text


def test_card_model_index_for_pretrained_weights_has_each_published_row_and_the_measured_accuracy(built):
    from huggingface_hub import ModelCard

    from zoo.publish.card import config_json, model_card

    reg, v, w = registry_entry()
    m = json.loads((folder_of(built) / "manifest.json").read_text())
    m["weights"] = {"mode": "pretrained", "origin": w.url, "sha256": "ab" * 32, "size": 1}
    m["accuracy"] = {"result": {"top1": 77.52, "top5": 93.61, "n_evaluated": 50000}, "images_in_set": 50000,
                     "published_top1": 77.618, "verdict": {"passed": True}}
    card = ModelCard(model_card(m, reg, v, w, "org/x", config_json(m, v, w, "float32")))
    imagenet = [e for e in card.data.eval_results if e.dataset_type == "imagenet-1k"]
    for p in w.published:
        doc = reg.documents[p.provenance.doc]
        mine = {(e.metric_type, e.metric_value) for e in imagenet
                if e.source_url == doc.url and p.provenance.table in e.source_name}
        assert mine == {("accuracy", p.top1), ("top_5_accuracy", p.top5)}, p.provenance
    measured = {(e.metric_type, e.metric_value) for e in imagenet if "measured on 50000 images" in e.metric_name}
    assert measured == {("accuracy", 77.52), ("top_5_accuracy", 93.61)}
    # huggingface_hub's own re-serialisation merges results per dataset; every value and its provenance survive
    names = {(mm["name"], mm["value"]) for r in card.data.to_dict()["model-index"][0]["results"] for mm in r["metrics"]}
    for p in w.published:
        assert any(p.provenance.table in n and val == p.top1 for n, val in names)
    assert "UNTRAINED" not in card.text and "FAILED" not in card.text
    assert "ab" * 32 in card.text
    # a failed build does not inherit the checkpoint's claims; what was measured on it stays
    m["status"] = "failed"
    m["validation"]["parity"]["passed"] = False
    failed = ModelCard(model_card(m, reg, v, w, "org/x", config_json(m, v, w, "float32")))
    assert failed.text.lstrip().startswith("> **FAILED VALIDATION.**")
    assert {e.metric_value for e in failed.data.eval_results if e.dataset_type == "imagenet-1k"} == {77.52, 93.61}


@pytest.mark.parametrize("target, precision, compiled, library, runs", [
    # f16 only where the CPU computes in it, as the runtime decides (zoo.targets.openvino.inference_config)
    ("openvino", "fp16", True, "openvino", 'config = {"INFERENCE_PRECISION_HINT": "f16"} if fp16 else {}'),
    ("mindir", "fp32", True, "mindspore", 'nn.GraphCell(ms.load("model.mindir"))'),
    ("vacc", "int8", False, None, "vamc compile resnext50_32x4d.json"),
])
def test_card_names_the_library_and_the_way_to_run_each_kind_of_artifact(built, target, precision, compiled,
                                                                          library, runs):
    from huggingface_hub import ModelCard

    from zoo.publish.card import config_json, model_card

    reg, v, w = registry_entry()
    m = json.loads((folder_of(built) / "manifest.json").read_text())
    primary = {"openvino": "model.xml", "mindir": "model.mindir", "vacc": "resnext50_32x4d.json"}[target]
    m.update(target=target, precision=precision)
    m["artifact"].update(primary=primary, compiled=compiled, commands=[] if compiled else [runs])
    m["status"] = "passed" if compiled else "kit"
    card = ModelCard(model_card(m, reg, v, w, "org/x", config_json(m, v, w, "float32")))
    assert card.data.get("library_name") == library
    assert {target, precision} <= set(card.data.tags)
    # a kit says what it is before anything else; a compiled artifact makes no such claim
    assert card.text.lstrip().startswith("> **BUILD KIT, NOT COMPILED.**") is not compiled
    assert ("build-kit" in card.data.tags) is not compiled
    assert runs in card.text and "def preprocess(path):" in card.text


def test_card_snippet_runs_with_the_registry_preprocessing(built, published, tmp_path):
    import onnxruntime as ort

    from zoo.labels import imagenet_labels
    from zoo.preprocess import preprocess
    from zoo.registry.query import effective_input
    from zoo.validators.inputs import generated_images

    repo, _ = published
    code = re.search(r"```python\n(.*?)```", (repo / "README.md").read_text(), re.S).group(1)
    image = generated_images(1, seed=3)[0].resize((333, 250))
    image.save(tmp_path / "image.jpg", quality=95)
    for name in ("model.onnx", "config.json"):
        (tmp_path / name).symlink_to(repo / name)
    head = code.split("session = ")[0]
    ns: dict = {}
    exec(head, ns)  # imports and preprocess() only
    _, v, w = registry_entry()
    from PIL import Image

    expected = preprocess(Image.open(tmp_path / "image.jpg"), effective_input(v, w))[None]
    assert np.array_equal(ns["preprocess"](str(tmp_path / "image.jpg")), expected)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = [line.rsplit(" ", 1) for line in proc.stdout.strip().splitlines()]
    scores = ort.InferenceSession(str(repo / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": expected})[0][0]
    assert len(rows) == 5 and rows[0][0] == imagenet_labels()[int(np.argmax(scores))]
    probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert abs(float(rows[0][1]) - float(probs.max())) < 1e-5


def test_local_republish_is_a_noop_and_a_changed_artifact_sends_only_what_changed(art, tmp_path):
    root = tmp_path / "mirror"
    assert publish(art, *local(root)).returncode == 0
    repo = root / REPO
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo.iterdir()}

    again = publish(art, *local(root))
    assert again.returncode == 0, again.stderr
    assert set(actions(again.stdout).values()) == {"skip"} and "unchanged" in again.stdout
    assert "commit  none" in again.stdout
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo.iterdir()} == before

    dry = publish(art, *local(root), "dry_run=true")
    assert dry.returncode == 0 and set(actions(dry.stdout).values()) == {"skip"}

    # what `zoo validate` does to a manifest: the measured accuracy travels with the artifact
    edit_manifest(art, lambda m: m.update(accuracy={
        "result": {"top1": 0.1, "top5": 0.5, "n_evaluated": 1000}, "images_in_set": 1000, "published_top1": 77.618,
        "verdict": {"passed": None}}))
    dry = publish(art, *local(root), "dry_run=true")
    expected = {"model.onnx": "skip", "config.json": "skip", "manifest.json": "update", "README.md": "update"}
    assert actions(dry.stdout) == expected
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in repo.iterdir()} == before  # dry: untouched

    changed = publish(art, *local(root), "hub.revision_tag=v2")
    assert changed.returncode == 0, changed.stderr
    assert actions(changed.stdout) == expected and "tag     v2: created" in changed.stdout
    assert (repo / "model.onnx").stat().st_ino == before["model.onnx"][0]  # linked over, not rewritten
    assert (repo / "manifest.json").read_bytes() == (folder_of(art) / "manifest.json").read_bytes()
    log = json.loads((repo / ".zoo-publish.json").read_text())
    assert len(log["commits"]) == 2 and sorted(log["commits"][1]["wrote"]) == ["README.md", "manifest.json"]
    assert log["commits"][1]["parent"] == log["commits"][0]["id"] and log["tags"] == {"v2": log["head"]}
    assert log["commits"][1]["manifest_sha256"] == sha256((repo / "manifest.json").read_bytes())
    from huggingface_hub import ModelCard

    results = ModelCard((repo / "README.md").read_text()).data.eval_results
    assert {(e.metric_type, e.metric_value) for e in results if e.dataset_type == "imagenet-1k"} == {
        ("accuracy", 0.1), ("top_5_accuracy", 0.5)}
    # a tag is immutable: the same name on other files is refused, on the same files accepted
    assert "v2: exists with the same files" in publish(art, *local(root), "hub.revision_tag=v2").stdout
    edit_manifest(art, lambda m: m.pop("accuracy"))
    assert_one_line_error(publish(art, *local(root), "hub.revision_tag=v2"), 2, "tag 'v2' already exists")


def test_failed_artifact_is_refused_and_force_publishes_it_marked_failed(art, tmp_path):
    def fail(m):
        m["status"] = "failed"
        m["validation"]["parity"]["passed"] = False
        m["validation"]["passed"] = False

    edit_manifest(art, fail)
    root = tmp_path / "mirror"
    assert_one_line_error(publish(art, *local(root)), 2, "failed validation (parity)", "force=true")
    assert not root.exists()
    forced = publish(art, *local(root), "force=true")
    assert forced.returncode == 0, forced.stderr
    from huggingface_hub import ModelCard

    card = ModelCard((root / REPO / "README.md").read_text())
    assert card.text.lstrip().startswith("> **FAILED VALIDATION.**") and "(failed: parity)" in card.text
    assert "failed-validation" in card.data.tags and "Status: **failed**" in card.text
    assert all(e.dataset_type == "zoo-parity-inputs" for e in card.data.eval_results)


def test_a_changed_artifact_file_is_refused(art, tmp_path):
    model = folder_of(art) / "model.onnx"
    data = bytearray(model.read_bytes())
    model.unlink()
    data[-1] ^= 1
    model.write_bytes(bytes(data))
    assert_one_line_error(publish(art, *local(tmp_path / "m")), 2, "model.onnx is missing or differs")


def test_cli_errors_are_one_line(built, tmp_path):
    assert_one_line_error(publish(built, "hub=nonexistent"), 2, "unknown hub 'nonexistent'", "hf", "local")
    assert_one_line_error(publish(built), 2, "publish needs a hub")
    assert_one_line_error(publish(built, "hub=local", f"hub.root={tmp_path}"), 2, "hub.repo=org/name", "hub.org")
    assert_one_line_error(publish(built, "hub=local", f"hub.root={tmp_path}", "hub.repo=a/b/c"), 2, "org/name")
    assert_one_line_error(publish(built, "hub=local", "hub.repo=a/b"), 2, "hub.root")
    (tmp_path / "cwd").mkdir()  # Hydra writes its sweep folder into the working directory
    sweep = run_zoo("-m", "publish", *ART, f"out_dir={built}", "hub=local", f"hub.root={tmp_path / 'm'}",
                    "hub.repo=a/b", cwd=tmp_path / "cwd")
    assert sweep.returncode == 2 and "give hub.org=ORG instead of hub.repo" in sweep.stderr
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------- Hugging Face Hub (PROTOCOL FAKE)


def hf_env(hub: FakeHub, home: Path, token: str | None = TOKEN) -> dict:
    return {"HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HF_TOKEN": token or "",
            "HUGGING_FACE_HUB_TOKEN": "", "HF_OIDC_RESOURCE": "", "HF_HUB_DISABLE_XET": "1",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def hub_requests(hub: FakeHub) -> list:
    """The requests a publish made (huggingface_hub's own agent-registry lookup left out)."""
    return [r for r in hub.requests if not r.path.startswith("/api/agent-harnesses")]


def assert_no_token_anywhere(token: str, outputs: list[str], *roots: Path) -> None:
    for text in outputs:
        assert token not in text
    for root in roots:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                assert token.encode() not in p.read_bytes(), p


def test_hf_publish_sends_one_commit_and_a_republish_sends_nothing(art, tmp_path):
    folder = folder_of(art)
    manifest = json.loads((folder / "manifest.json").read_text())
    model = manifest["artifact"]["files"][0]
    with FakeHub(TOKEN) as hub:
        env = hf_env(hub, tmp_path / "hf-home")
        first = publish(art, "hub=hf", "hub.org=zoo-test", "hub.revision_tag=v1", env=env)
        assert first.returncode == 0, first.stderr
        assert [r.route for r in hub_requests(hub)] == ["create", "paths-info", "validate-yaml", "preupload",
                                                        "lfs-batch", "lfs-put", "commit", "tag"]
        assert all(r.status == 200 for r in hub_requests(hub))
        # the token went to the Hub API and nowhere else
        for r in hub_requests(hub):
            assert r.headers.get("authorization") == (None if r.route == "lfs-put" else f"Bearer {TOKEN}"), r.route
        (put,) = hub.calls("lfs-put")
        assert put.body == model["size"] and put.path.endswith(model["sha256"])
        (commit,) = hub.calls("commit")
        header, *ops = commit.body
        manifest_sha = sha256((folder / "manifest.json").read_bytes())
        assert manifest_sha in header["value"]["summary"]
        by_path = {op["value"]["path"]: op for op in ops}
        assert by_path["model.onnx"]["key"] == "lfsFile"
        assert by_path["model.onnx"]["value"]["oid"] == model["sha256"]
        sent = {p: base64.b64decode(op["value"]["content"]) for p, op in by_path.items() if op["key"] == "file"}
        assert sorted(sent) == ["README.md", "config.json", "manifest.json"]
        assert sent["manifest.json"] == (folder / "manifest.json").read_bytes()
        assert json.loads(sent["config.json"])["input"]["name"] == "input"
        assert sent["README.md"].startswith(b"---\nlibrary_name: onnx\n")
        repo = hub.repos[REPO]
        assert repo.tags == {"v1": repo.head["oid"]} and f"commit  {repo.head['oid']}" in first.stdout
        assert hub.file_bytes(REPO, "model.onnx") == (folder / "model.onnx").read_bytes()

        hub.requests.clear()
        second = publish(art, "hub=hf", "hub.org=zoo-test", "hub.revision_tag=v1", env=env)
        assert second.returncode == 0, second.stderr
        assert set(actions(second.stdout).values()) == {"skip"} and "v1: exists with the same files" in second.stdout
        routes = [r.route for r in hub_requests(hub)]
        assert "commit" not in routes and "preupload" not in routes and "lfs-put" not in routes
        assert routes == ["create", "paths-info", "tag", "paths-info"]  # tag exists: its files are compared
        assert len(repo.commits) == 2  # the initial commit and ours
        stored = [hub.file_bytes(REPO, p) for p in ("README.md", "config.json", "manifest.json")]
    outputs = [first.stdout, first.stderr, second.stdout, second.stderr]
    assert_no_token_anywhere(TOKEN, outputs + [s.decode() for s in stored], tmp_path)


def test_hf_transient_failures_are_retried_without_a_half_commit(art, tmp_path):
    with FakeHub(TOKEN) as hub:
        hub.fail("commit", 500)  # huggingface_hub sends the commit once: the retry is ours
        hub.fail("paths-info", RESET)  # a dropped connection before any answer
        proc = publish(art, "hub=hf", "hub.repo=zoo-test/retry", "hub.retry_wait_s=0", env=hf_env(hub, tmp_path / "h"))
        assert proc.returncode == 0, proc.stderr
        assert [r.status for r in hub.calls("commit")] == [500, 200]
        assert [r.status for r in hub.calls("paths-info")] == [-1, 200, 200]
        assert len(hub.repos["zoo-test/retry"].commits) == 2
        assert proc.stderr.count("transient failure") == 2
        # a failure that is not transient stops at once, in one line, naming neither token
        hub.requests.clear()
        wrong = "hf_zooWrongToken_77aa11"
        bad = publish(art, "hub=hf", "hub.repo=zoo-test/retry", env=hf_env(hub, tmp_path / "h", token=wrong))
        assert_one_line_error(bad, 1, "401", "may write to zoo-test")
        assert {r.route for r in hub_requests(hub)} <= {"create", "unknown"}  # create, then its repo lookup
        for text in (proc.stdout, proc.stderr, bad.stdout, bad.stderr):
            assert TOKEN not in text and wrong not in text


def test_hf_dry_run_makes_no_request_and_no_token_is_one_line(built, tmp_path):
    manifest = json.loads((folder_of(built) / "manifest.json").read_text())
    with FakeHub(TOKEN) as hub:
        dry = publish(built, "hub=hf", "hub.repo=zoo-test/dry", "dry_run=true", env=hf_env(hub, tmp_path / "h"))
        assert dry.returncode == 0, dry.stderr
        assert hub.requests == []
        assert actions(dry.stdout) == {p: "add*" for p in ("model.onnx", "manifest.json", "config.json", "README.md")}
        model = manifest["artifact"]["files"][0]
        assert re.search(rf"model\.onnx\s+{model['size']:,} B  sha256 {model['sha256']}", dry.stdout)
        assert sha256((folder_of(built) / "manifest.json").read_bytes()) in dry.stdout
        none = publish(built, "hub=hf", "hub.repo=zoo-test/dry", env=hf_env(hub, tmp_path / "h2", token=None))
        assert_one_line_error(none, 2, "no Hugging Face token", "HF_TOKEN")
        assert hub.requests == []


# ---------------------------------------------------------------- local paths stay local


def test_public_manifest_reduces_local_paths_to_file_names_and_keeps_everything_else(tmp_path):
    from zoo.publish.public import manifest_bytes, public_manifest
    from zoo.store import write_json

    url = "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth"
    local = {
        "weights": {"mode": "file", "path": "/home/alice/ckpts/my.pth", "sha256": "ab" * 32, "size": 7},
        "accuracy": {"data": "../datasets/imagenet/val", "images_in_set": 3,
                     "result": {"top1": 1.0, "skipped_examples": {"undecodable": ["/data/val/n01/x.JPEG"]}}},
        "artifact": {"summary": ["kit notes in /srv/build/kit/readme.txt", f"from {url}", "scale 1/255",
                                 "mirror file:///mnt/alice/m/w.pth used"],
                     "files": [{"name": "model.onnx", "sha256": "cd" * 32, "size": 9}]},
        "mirrored": {"origin": "hf://timm/resnext50_32x4d.a1h_in1k/model.safetensors", "mirror": "~/m/a/model.bin"},
    }
    before = json.dumps(local, sort_keys=True)
    public = public_manifest(local)
    assert json.dumps(local, sort_keys=True) == before  # the local record is not touched
    assert public["weights"] == {"mode": "file", "path": "my.pth", "sha256": "ab" * 32, "size": 7}
    assert public["accuracy"]["data"] == "val"
    assert public["accuracy"]["result"] == {"top1": 1.0, "skipped_examples": {"undecodable": ["x.JPEG"]}}
    assert public["artifact"] == {"summary": ["kit notes in readme.txt", f"from {url}", "scale 1/255",
                                              "mirror w.pth used"],
                                  "files": local["artifact"]["files"]}
    assert public["mirrored"] == {"origin": local["mirrored"]["origin"], "mirror": "model.bin"}
    # serialised exactly as the build writes it: a manifest without paths publishes byte for byte
    write_json(tmp_path / "m.json", public)
    assert manifest_bytes(public) == (tmp_path / "m.json").read_bytes()


@pytest.fixture(scope="module")
def built_from_file(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import make_checkpoint

    private = tmp_path_factory.mktemp("alice-private-checkpoints")
    ckpt = make_checkpoint("resnext50_32x4d", "torchvision", private / "my-resnext.pth")
    out = tmp_path_factory.mktemp("file-artifacts")
    proc = run_zoo("convert", *ART, f"weights={ckpt}", f"out_dir={out}", "progress=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, ckpt


def test_a_local_weights_path_is_not_published_but_its_hash_is(built_from_file, tmp_path):
    from huggingface_hub import ModelCard

    out, ckpt = built_from_file
    folder = folder_of(out)
    local_manifest = json.loads((folder / "manifest.json").read_text())
    assert local_manifest["weights"]["path"] == str(ckpt)  # the premise: the build recorded where it read from
    private = str(ckpt.parent).encode()
    local_sha = sha256((folder / "manifest.json").read_bytes())

    root = tmp_path / "mirror"
    first = publish(out, *local(root))
    assert first.returncode == 0, first.stderr
    repo = root / REPO
    files = [p for p in repo.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"model.onnx", "manifest.json", "config.json", "README.md", ".zoo-publish.json"}
    for p in files:
        assert private not in p.read_bytes(), p
    published = json.loads((repo / "manifest.json").read_text())
    assert published["weights"] == {**local_manifest["weights"], "path": ckpt.name}
    assert {k: v for k, v in published.items() if k != "weights"} == \
        {k: v for k, v in local_manifest.items() if k != "weights"}
    assert local_manifest["weights"]["sha256"] in ModelCard((repo / "README.md").read_text()).text
    # the commit names the manifest it published; the build's own manifest is named in its description
    published_sha = sha256((repo / "manifest.json").read_bytes())
    assert published_sha != local_sha
    (commit,) = json.loads((repo / ".zoo-publish.json").read_text())["commits"]
    assert commit["manifest_sha256"] == published_sha and published_sha in commit["message"]
    assert local_sha not in commit["message"] and f"local manifest.json sha256: {local_sha}" in commit["description"]
    again = publish(out, *local(root))
    assert again.returncode == 0 and set(actions(again.stdout).values()) == {"skip"} and "commit  none" in again.stdout

    with FakeHub(TOKEN) as hub:
        env = hf_env(hub, tmp_path / "hf-home")
        sent = publish(out, "hub=hf", "hub.org=zoo-test", env=env)
        assert sent.returncode == 0, sent.stderr
        (call,) = hub.calls("commit")
        header, *ops = call.body
        uploaded = {op["value"]["path"]: base64.b64decode(op["value"]["content"]) if op["key"] == "file"
                    else hub.objects[op["value"]["oid"]] for op in ops}
        assert sorted(uploaded) == ["README.md", "config.json", "manifest.json", "model.onnx"]
        for path, data in uploaded.items():
            assert private not in data, path
        assert uploaded["manifest.json"] == (repo / "manifest.json").read_bytes()
        assert published_sha in header["value"]["summary"]
        hub.requests.clear()
        resent = publish(out, "hub=hf", "hub.org=zoo-test", env=env)
        assert resent.returncode == 0 and "commit" not in [r.route for r in hub_requests(hub)]
