"""weights=pretrained end to end: the registry's URL, served by a real HTTP server on 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest

from conftest import make_checkpoint, manifest_of, run_zoo
from zoo.registry.loader import PACKAGE_CONF

URL = "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth"


@pytest.fixture
def served_checkpoint(tmp_path):
    """A torchvision checkpoint named <name>-<sha256 prefix>.pth, as torchvision names its files."""
    root = tmp_path / "www"
    root.mkdir()
    ckpt = make_checkpoint("resnext50_32x4d", "torchvision", tmp_path / "ckpt.pth", seed=11)
    prefix = hashlib.sha256(ckpt.read_bytes()).hexdigest()[:8]
    name = f"resnext50_32x4d-{prefix}.pth"
    shutil.copy(ckpt, root / name)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{name}", prefix, ckpt
    server.shutdown()


def _site_registry(tmp_path: Path, url: str, prefix: str) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(PACKAGE_CONF, conf)
    path = conf / "model" / "resnext50_32x4d.yaml"
    text = path.read_text()
    assert URL in text
    path.write_text(text.replace(URL, url, 1).replace("sha256_prefix: 7cdf4587", f"sha256_prefix: {prefix}", 1))
    return conf


def test_pretrained_weights_are_fetched_verified_and_cached(tmp_path, served_checkpoint):
    url, prefix, ckpt = served_checkpoint
    env = {"ZOO_CONF": str(_site_registry(tmp_path, url, prefix)), "ZOO_CACHE": str(tmp_path / "cache")}
    args = ["convert", "model=resnext50_32x4d", "source=torchvision", f"out_dir={tmp_path / 'out'}", "progress=false"]
    proc = run_zoo(*args, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    m = manifest_of(tmp_path / "out", "resnext50_32x4d", "torchvision", "IMAGENET1K_V1")
    assert m["weights"]["mode"] == "pretrained" and m["weights"]["origin"] == url
    assert m["weights"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert m["status"] == "passed" and m["validation"]["accuracy"]["skipped"] == "no dataset given"
    blob = tmp_path / "cache" / "blobs" / "sha256" / m["weights"]["sha256"]
    assert blob.read_bytes() == ckpt.read_bytes()
    # offline from the cache works, and rebuilds the same bytes
    again = run_zoo(*args, "offline=true", "force=true", env=env)
    assert again.returncode == 0, again.stderr


def test_offline_without_cache_and_corrupt_download_fail_clearly(tmp_path, served_checkpoint):
    url, prefix, _ = served_checkpoint
    conf = _site_registry(tmp_path, url, prefix)
    args = ["convert", "model=resnext50_32x4d", "source=torchvision", f"out_dir={tmp_path / 'out'}", "progress=false"]
    proc = run_zoo(*args, "offline=true", env={"ZOO_CONF": str(conf), "ZOO_CACHE": str(tmp_path / "c1")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "offline" in proc.stderr and url in proc.stderr and "curl -L" in proc.stderr
    # the registry's prefix does not match what the server sends: refused, nothing cached, no artifact
    bad = _site_registry(tmp_path / "bad", url, "deadbeef")
    proc = run_zoo(*args, env={"ZOO_CONF": str(bad), "ZOO_CACHE": str(tmp_path / "c2")})
    assert proc.returncode == 2 and "failed verification" in proc.stderr, proc.stderr
    assert not [p for p in (tmp_path / "c2" / "blobs").rglob("*") if p.is_file()]
    assert not list((tmp_path / "out").rglob("manifest.json"))
