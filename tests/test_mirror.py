"""A local mirror as the weight source (mirror=DIR) for zoo.fetch, `zoo fetch` and `zoo convert`.

The mirror holds a real checkpoint (a freshly initialised torchvision resnext50_32x4d saved by
torchvision's own code). Registry entries carry the digests of the real published files, which a fresh
init cannot reproduce: the fetch-level tests use FetchRequests with the digest computed here, and the CLI
tests override the registry entry's digest (+model.weights.0.sha256=...). A real HTTP server on 127.0.0.1
stands in for the network and counts every request: a mirror fetch must make none."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import List

import pytest
from conftest import make_checkpoint, run_zoo

from zoo.errors import UserError
from zoo.fetch import FetchError, FetchRequest, fetch, mirror_path, write_to_mirror

TV_URL = "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth"  # the registry's IMAGENET1K_V1 file
TV_IN_MIRROR = Path("download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth")
ENTRY = ["model=resnext50_32x4d", "source=torchvision", "tag=IMAGENET1K_V1"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Network:
    """A file server that must not be asked: it records every request and serves other bytes."""

    def __init__(self) -> None:
        self.requests: List[str] = []
        self.lock = threading.Lock()
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, body: bool) -> None:
                with state.lock:
                    state.requests.append(f"{self.command} {self.path}")
                data = b"not the mirror's bytes"
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer(True)

            def do_HEAD(self) -> None:
                self._answer(False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def network(monkeypatch):
    net = Network()
    monkeypatch.setenv("HF_ENDPOINT", net.base)  # any Hub request would land here
    yield net
    net.close()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint("resnext50_32x4d", "torchvision", tmp_path_factory.mktemp("ckpt") / "model.pth")


@pytest.fixture(scope="module")
def digest(checkpoint: Path) -> str:
    return sha(checkpoint.read_bytes())


def place(checkpoint: Path, root: Path, rel: Path, copy: bool = False) -> Path:
    dst = root / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copyfile if copy else os.link)(checkpoint, dst)
    return dst


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, UserError), msg
    return msg


# ---------------------------------------------------------------- layout


def test_mirror_paths_follow_the_hub_id_or_the_url_host_and_path(tmp_path):
    assert mirror_path(FetchRequest(url=TV_URL), tmp_path) == tmp_path / TV_IN_MIRROR
    assert mirror_path(FetchRequest(hf_hub_id="timm/resnext50_32x4d.a1h_in1k"), tmp_path) == \
        tmp_path / "timm" / "resnext50_32x4d.a1h_in1k" / "model.safetensors"
    assert mirror_path(FetchRequest(hf_hub_id="org/repo", filename="sub/w.bin"), tmp_path) == \
        tmp_path / "org" / "repo" / "sub" / "w.bin"
    # the port and query go, %-escapes are decoded: the path is the file's, not the request's
    assert mirror_path(FetchRequest(url="http://Host.example:8080/a%20b/w.pth?x=1"), tmp_path) == \
        tmp_path / "host.example" / "a b" / "w.pth"
    for bad in ("https://h.example/a/../../etc/passwd", "https://h.example/dir/"):
        with pytest.raises(FetchError) as e:
            mirror_path(FetchRequest(url=bad), tmp_path)
        assert "no file path inside a mirror" in one_line(e)


# ---------------------------------------------------------------- zoo.fetch with mirror=


@pytest.mark.parametrize("offline", [False, True])
def test_url_entry_is_read_from_the_mirror_verified_and_cached_without_a_request(
        network, checkpoint, digest, tmp_path, offline):
    url = f"{network.base}/models/resnext50_32x4d-{digest[:8]}.pth"
    req = FetchRequest(url=url, sha256=digest)
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    src = place(checkpoint, mirror, Path("127.0.0.1") / "models" / f"resnext50_32x4d-{digest[:8]}.pth")
    got = fetch(req, cache_dir=cache, offline=offline, progress=False, mirror=mirror)
    assert (got.sha256, got.size, got.origin, got.cache_hit, got.mirror) == \
        (digest, checkpoint.stat().st_size, url, False, src)
    assert got.path == cache / "blobs" / "sha256" / digest and sha(got.path.read_bytes()) == digest
    # the same origin as a download: a later fetch without the mirror is a cache hit
    again = fetch(req, cache_dir=cache, offline=True, progress=False)
    assert again.cache_hit and again.path == got.path and again.mirror is None
    assert network.requests == []


@pytest.mark.parametrize("offline", [False, True])
def test_hub_entry_is_read_from_the_hub_layout_of_the_mirror(network, checkpoint, digest, tmp_path, offline):
    req = FetchRequest(hf_hub_id="zoo-mirror/resnext50_32x4d.fresh", filename="pytorch_model.bin", sha256=digest)
    mirror = tmp_path / "mirror"
    src = place(checkpoint, mirror, Path("zoo-mirror/resnext50_32x4d.fresh/pytorch_model.bin"))
    got = fetch(req, cache_dir=tmp_path / "cache", offline=offline, progress=False, mirror=mirror)
    assert got.origin == "hf://zoo-mirror/resnext50_32x4d.fresh/pytorch_model.bin"
    assert got.mirror == src and got.sha256 == digest and not got.cache_hit
    assert network.requests == []
    assert not (tmp_path / "cache" / "hf").exists()  # huggingface_hub was never asked


def test_a_file_absent_from_the_mirror_is_one_line_naming_the_expected_path(network, digest, tmp_path):
    (tmp_path / "mirror").mkdir()
    req = FetchRequest(url=TV_URL, sha256=digest)
    with pytest.raises(FetchError) as e:
        fetch(req, cache_dir=tmp_path / "cache", progress=False, mirror=tmp_path / "mirror")
    msg = one_line(e)
    assert f"expected {tmp_path / 'mirror' / TV_IN_MIRROR}" in msg and TV_URL in msg
    with pytest.raises(FetchError) as e:
        fetch(req, cache_dir=tmp_path / "cache", progress=False, mirror=tmp_path / "no-such-mirror")
    assert f"mirror={tmp_path / 'no-such-mirror'}: no such folder" in one_line(e)
    assert network.requests == []


def test_a_corrupt_mirror_file_fails_verification_and_stays_out_of_the_cache(network, checkpoint, digest, tmp_path):
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    bad = place(checkpoint, mirror, TV_IN_MIRROR, copy=True)
    with open(bad, "r+b") as f:  # one flipped byte deep inside the tensors
        f.seek(bad.stat().st_size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    got_sha = sha(bad.read_bytes())
    with pytest.raises(FetchError) as e:
        fetch(FetchRequest(url=TV_URL, sha256=digest), cache_dir=cache, progress=False, mirror=mirror)
    msg = one_line(e)
    assert str(bad) in msg and f"expected sha256 {digest}" in msg and f"got sha256 {got_sha}" in msg
    blob_dir = cache / "blobs" / "sha256"
    assert not blob_dir.exists() or list(blob_dir.iterdir()) == []
    assert not (cache / "refs").exists() or list((cache / "refs").iterdir()) == []
    assert sha(bad.read_bytes()) == got_sha  # the mirror's file is left for its admin
    # the registry's own digest prefix of the real file rejects it too
    with pytest.raises(FetchError) as e:
        fetch(FetchRequest(url=TV_URL), cache_dir=cache, progress=False, mirror=mirror)
    assert "expected sha256 prefix 7cdf4587" in one_line(e)
    assert network.requests == []


def test_without_a_registry_digest_the_sidecar_is_checked(network, checkpoint, digest, tmp_path):
    req = FetchRequest(hf_hub_id="zoo-mirror/no-digest", filename="model.pth")  # like most timm entries
    mirror = tmp_path / "mirror"
    src = place(checkpoint, mirror, Path("zoo-mirror/no-digest/model.pth"))
    side = src.with_name("model.pth.sha256")
    side.write_text(f"{'0' * 64}  model.pth\n")
    with pytest.raises(FetchError) as e:
        fetch(req, cache_dir=tmp_path / "c1", progress=False, mirror=mirror)
    assert f"expected sha256 {'0' * 64}" in one_line(e)
    side.write_text("not a digest\n")
    with pytest.raises(FetchError) as e:
        fetch(req, cache_dir=tmp_path / "c1", progress=False, mirror=mirror)
    assert "is not a sha256sum line" in one_line(e)
    side.write_text(f"{digest}  model.pth\n")
    assert fetch(req, cache_dir=tmp_path / "c1", progress=False, mirror=mirror).sha256 == digest
    side.unlink()  # no digest anywhere: trusted on first use, as a download without one is
    assert fetch(req, cache_dir=tmp_path / "c2", progress=False, mirror=mirror).sha256 == digest
    assert network.requests == []


def test_write_to_mirror_lays_out_a_mirror_that_a_fresh_cache_reads(network, checkpoint, digest, tmp_path):
    req = FetchRequest(hf_hub_id="zoo-mirror/roundtrip", filename="model.pth")
    first = tmp_path / "first"
    place(checkpoint, first, Path("zoo-mirror/roundtrip/model.pth"))
    (first / "zoo-mirror/roundtrip/model.pth.sha256").write_text(f"{digest}  model.pth\n")
    got = fetch(req, cache_dir=tmp_path / "c1", progress=False, mirror=first)
    out = tmp_path / "second"
    dest, written = write_to_mirror(got, req, out)
    assert written and dest == out / "zoo-mirror" / "roundtrip" / "model.pth"
    assert sha(dest.read_bytes()) == digest and not os.path.samefile(dest, got.path)  # a copy, not a link
    assert (out / "zoo-mirror/roundtrip/model.pth.sha256").read_text() == f"{digest}  model.pth\n"
    mtime = dest.stat().st_mtime_ns
    assert write_to_mirror(got, req, out) == (dest, False) and dest.stat().st_mtime_ns == mtime
    again = fetch(req, cache_dir=tmp_path / "c2", offline=True, progress=False, mirror=out)
    assert again.mirror == dest and again.sha256 == digest
    assert network.requests == []


# ---------------------------------------------------------------- the CLI: zoo fetch, zoo convert


def override(digest: str) -> List[str]:
    """The registry entry, pointed at the fresh checkpoint's digest instead of the real file's."""
    return [f"+model.weights.0.sha256={digest}", f"model.weights.0.sha256_prefix={digest[:8]}"]


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_zoo_fetch_reads_the_mirror_offline_then_hits_the_cache_and_fills_another_mirror(
        checkpoint, digest, tmp_path):
    mirror = tmp_path / "mirror"
    src = place(checkpoint, mirror, TV_IN_MIRROR)
    env = {"ZOO_CACHE": str(tmp_path / "cache")}
    first = run_zoo("fetch", *ENTRY, *override(digest), f"mirror={mirror}", "offline=true", "progress=false", env=env)
    assert first.returncode == 0, first.stderr
    blob = tmp_path / "cache" / "blobs" / "sha256" / digest
    out = first.stdout
    assert "read from the mirror" in out and f"mirror     {src}" in out and f"path       {blob}" in out
    assert f"size       {checkpoint.stat().st_size:,} B" in out and f"sha256     {digest}" in out
    assert "cache      miss" in out and f"origin     {TV_URL}" in out
    second = run_zoo("fetch", *ENTRY, *override(digest), "offline=true", "format=json",
                     f"mirror_out={tmp_path / 'out'}", env=env)
    assert second.returncode == 0, second.stderr
    r = json.loads(second.stdout)
    assert (r["cache_hit"], r["from"], r["sha256"], r["size"], r["path"]) == \
        (True, "cache", digest, checkpoint.stat().st_size, str(blob))
    assert r["mirror_out"] == {"path": str(tmp_path / "out" / TV_IN_MIRROR), "written": True}
    assert sha((tmp_path / "out" / TV_IN_MIRROR).read_bytes()) == digest


def test_zoo_fetch_errors_are_one_line(checkpoint, tmp_path):
    env = {"ZOO_CACHE": str(tmp_path / "cache")}
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_zoo("fetch", *ENTRY, f"mirror={tmp_path / 'empty'}", env=env),
                          f"expected {tmp_path / 'empty' / TV_IN_MIRROR}")
    assert_one_line_error(run_zoo("fetch", *ENTRY, f"mirror={tmp_path / 'nowhere'}", env=env), "no such folder")
    # the registry's real digest prefix (7cdf4587) against a fresh init's bytes
    place(checkpoint, tmp_path / "mirror", TV_IN_MIRROR)
    line = assert_one_line_error(run_zoo("fetch", *ENTRY, f"mirror={tmp_path / 'mirror'}", env=env),
                                 "failed verification", "expected sha256 prefix 7cdf4587")
    assert str(tmp_path / "mirror" / TV_IN_MIRROR) in line
    assert not (tmp_path / "cache" / "blobs" / "sha256").exists() or \
        list((tmp_path / "cache" / "blobs" / "sha256").iterdir()) == []


def test_convert_reads_pretrained_weights_from_the_mirror_offline(checkpoint, digest, tmp_path):
    mirror, out = tmp_path / "mirror", tmp_path / "artifacts"
    src = place(checkpoint, mirror, TV_IN_MIRROR)
    env = {"ZOO_CACHE": str(tmp_path / "cache")}
    args = ["convert", *ENTRY, "target=onnx", *override(digest), f"out_dir={out}", "offline=true", "progress=false"]
    proc = run_zoo(*args, f"mirror={mirror}", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = json.loads((out / "resnext50_32x4d/torchvision/IMAGENET1K_V1/onnx/manifest.json").read_text())
    assert m["status"] == "passed"
    assert m["weights"] == {"mode": "pretrained", "origin": TV_URL, "sha256": digest,
                            "size": checkpoint.stat().st_size, "cache_hit": False, "mirror": str(src)}
    # the same bytes are the same weights: without the mirror the artifact is already built
    again = run_zoo(*args, env=env)
    assert again.returncode == 0, again.stderr
    assert "(cache hit)" in again.stdout.splitlines()[0]
