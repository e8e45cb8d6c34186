"""zoo.fetch against real HTTP servers on 127.0.0.1: a file server with switchable faults, and a
protocol fake of the Hugging Face Hub's /resolve endpoint. Nothing leaves the machine."""
from __future__ import annotations

import collections
import hashlib
import json
import math
import multiprocessing
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
from conftest import run_zoo

from zoo.errors import UserError
from zoo.fetch import FetchError, FetchRequest, RetryPolicy, default_cache_dir, fetch, sha256_file

FAST = RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05, timeout=5.0)
MB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()


def blobs(cache: Path) -> List[Path]:
    folder = cache / "blobs" / "sha256"
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def refs(cache: Path) -> List[Path]:
    return sorted((cache / "refs").glob("*.json")) if (cache / "refs").exists() else []


def assert_actionable(err: pytest.ExceptionInfo, url: str, dest: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert url in msg, msg
    assert f"curl -L --create-dirs -o {dest} '{url}'" in msg, msg
    assert f"weights={dest}" in msg, msg
    assert isinstance(err.value, UserError)
    return msg


# --------------------------------------------------------------------------- file server

class Origin:
    """What the file server serves and how it misbehaves; every request it answers is logged."""

    def __init__(self) -> None:
        self.files: Dict[str, bytes] = {}
        self.faults: collections.deque = collections.deque()  # consumed one per GET: int status, "truncate", "stall"
        self.ranges = True         # False: ignore Range, always 200 with the whole file
        self.throttle = 0.0        # seconds per 64 KiB chunk
        self.stall = 0.0           # seconds a "stall" fault waits before answering
        self.endless: set = set()  # paths answered with a body that has no Content-Length and never ends
        self.trickle: Dict[str, float] = {}  # path -> seconds between single bytes (Content-Length sent)
        self.log: List[dict] = []
        self.lock = threading.Lock()
        self.base = ""

    def url(self, path: str) -> str:
        return self.base + path

    def gets(self) -> List[dict]:
        with self.lock:
            return [e for e in self.log if e["method"] == "GET"]


def _send_body(handler: BaseHTTPRequestHandler, data: bytes, throttle: float) -> None:
    try:
        for i in range(0, len(data), 64 * 1024):
            handler.wfile.write(data[i:i + 64 * 1024])
            if throttle:
                time.sleep(throttle)
    except (BrokenPipeError, ConnectionResetError):
        pass


class _OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        st: Origin = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        entry = {"method": "GET", "path": self.path, "range": rng, "status": None}
        with st.lock:
            fault = st.faults.popleft() if st.faults else None
            st.log.append(entry)  # on arrival: a stalled request counts even if the client gave up on it
        if fault == "stall":
            time.sleep(st.stall)
        if self.path in st.endless:
            _send_endless(self)
            return
        body = st.files.get(self.path)
        headers: Dict[str, str] = {}
        if body is None:
            status, data = 404, b"not found"
        elif isinstance(fault, int):
            status, data = fault, b"fault"
        elif rng and st.ranges:
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                status, data = 416, b""
                headers["Content-Range"] = f"bytes */{len(body)}"
            else:
                status, data = 206, body[start:]
                headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        else:
            status, data = 200, body
        entry["status"] = status
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes" if st.ranges else "none")
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
        except (BrokenPipeError, ConnectionResetError):
            return
        if fault == "truncate":
            # Promise all of it, send half, hang up: the client sees a body short of Content-Length.
            _send_body(self, data[: len(data) // 2], 0)
            self.close_connection = True
            return
        if self.path in st.trickle:
            _send_trickle(self, data, st.trickle[self.path])
            return
        _send_body(self, data, st.throttle)


def _send_endless(handler: BaseHTTPRequestHandler) -> None:
    """200, no Content-Length: the body ends when the connection closes, which this server never does."""
    handler.close_connection = True
    try:
        handler.send_response(200)
        handler.end_headers()
        chunk = os.urandom(64 * 1024)
        while True:
            handler.wfile.write(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _send_trickle(handler: BaseHTTPRequestHandler, data: bytes, every: float) -> None:
    handler.close_connection = True
    try:
        for i in range(len(data)):
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            time.sleep(every)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _serve(handler, state) -> Tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.state = state  # type: ignore[attr-defined]
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def origin():
    st = Origin()
    server, thread = _serve(_OriginHandler, st)
    yield st
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def payload() -> bytes:
    return os.urandom(3 * MB)


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def get(url: str, cache: Path, **kw) -> "object":
    fields = {k: kw.pop(k) for k in ("sha256", "sha256_prefix", "max_bytes") if k in kw}
    return fetch(FetchRequest(url=url, **fields), cache_dir=cache, progress=kw.pop("progress", False),
                 retry=kw.pop("retry", FAST), **kw)


# --------------------------------------------------------------------------- 1. plain download, cache hit

def test_plain_download_then_cache_hit_without_a_request(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    got = get(url, cache, sha256=sha(payload))
    assert got.path == cache / "blobs" / "sha256" / sha(payload)
    assert got.path.read_bytes() == payload
    assert (got.sha256, got.size, got.origin, got.cache_hit) == (sha(payload), len(payload), url, False)
    assert json.loads((cache / "refs" / f"{key(url)}.json").read_text()) == \
        {"origin": url, "sha256": sha(payload), "size": len(payload)}
    assert not (cache / "partial" / f"{key(url)}.part").exists()
    assert len(origin.gets()) == 1

    again = get(url, cache, sha256=sha(payload))
    assert again.cache_hit and again.path == got.path
    assert len(origin.gets()) == 1, "a cache hit must not touch the network"


def test_without_a_digest_the_ref_finds_the_blob(origin, payload, cache):
    origin.files["/w/plain.bin"] = payload
    url = origin.url("/w/plain.bin")
    first = get(url, cache)
    second = get(url, cache)
    assert not first.cache_hit and second.cache_hit
    assert second.path == first.path == cache / "blobs" / "sha256" / sha(payload)
    assert len(origin.gets()) == 1


# --------------------------------------------------------------------------- 2. corrupt file

def test_corrupt_download_never_enters_the_cache(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    claimed = sha(b"the file the registry describes")
    with pytest.raises(FetchError) as err:
        get(url, cache, sha256=claimed)
    msg = assert_actionable(err, url, cache / "blobs" / "sha256" / claimed)
    assert f"expected sha256 {claimed}" in msg and f"got sha256 {sha(payload)}" in msg
    assert blobs(cache) == [] and refs(cache) == []
    assert not (cache / "partial" / f"{key(url)}.part").exists()


# --------------------------------------------------------------------------- 3. digest prefix in the name

@pytest.mark.parametrize("template", ["/hub/checkpoints/resnext101_32x8d-{p}.pth",
                                      "/mmcls/resnext50_32x4d_b32x8_imagenet_20210429-{p}.pth"])
def test_sha256_prefix_from_the_url_name(origin, payload, cache, template):
    good = template.format(p=sha(payload)[:8])
    origin.files[good] = payload
    got = get(origin.url(good), cache)
    assert got.sha256 == sha(payload) and got.path.read_bytes() == payload


def test_wrong_sha256_prefix_in_the_url_name_is_rejected(origin, payload, cache):
    wrong = "%08x" % ((int(sha(payload)[:8], 16) + 1) % 2**32)
    path = f"/hub/checkpoints/resnext101_32x8d-{wrong}.pth"
    origin.files[path] = payload
    with pytest.raises(FetchError) as err:
        get(origin.url(path), cache)
    msg = assert_actionable(err, origin.url(path), cache / "manual" / f"resnext101_32x8d-{wrong}.pth")
    assert f"expected sha256 prefix {wrong}" in msg
    assert blobs(cache) == [] and refs(cache) == []


def test_explicit_wrong_prefix_is_rejected(origin, payload, cache):
    origin.files["/w/x.pth"] = payload
    with pytest.raises(FetchError):
        get(origin.url("/w/x.pth"), cache, sha256_prefix="00000000" if not sha(payload).startswith("00") else "ffffffff")
    assert blobs(cache) == []


# --------------------------------------------------------------------------- 4. truncated transfer

def test_truncated_transfer_resumes_with_range(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.faults.append("truncate")
    got = get(origin.url("/w/model.pth"), cache, sha256=sha(payload))
    assert got.path.read_bytes() == payload
    first, second = origin.gets()
    assert (first["range"], first["status"]) == (None, 200)
    assert (second["range"], second["status"]) == (f"bytes={len(payload) // 2}-", 206)


# --------------------------------------------------------------------------- 5. 5xx retried

def test_503_is_retried_then_succeeds(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.faults.extend([503, 503])
    got = get(origin.url("/w/model.pth"), cache, sha256=sha(payload))
    assert got.path.read_bytes() == payload
    assert [e["status"] for e in origin.gets()] == [503, 503, 200]


def test_persistent_503_gives_up_after_the_configured_attempts(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.faults.extend([503] * 10)
    url = origin.url("/w/model.pth")
    with pytest.raises(FetchError) as err:
        get(url, cache, sha256=sha(payload))
    msg = assert_actionable(err, url, cache / "blobs" / "sha256" / sha(payload))
    assert "HTTP 503" in msg and "4 attempts" in msg
    assert len(origin.gets()) == FAST.attempts


def test_read_timeout_is_retried(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.faults.append("stall")
    origin.stall = 1.0
    got = get(origin.url("/w/model.pth"), cache, sha256=sha(payload),
              retry=RetryPolicy(attempts=3, backoff_initial=0.01, backoff_max=0.05, timeout=0.3))
    assert got.path.read_bytes() == payload
    assert len(origin.gets()) == 2


# --------------------------------------------------------------------------- 6. resume an existing partial

def test_resume_from_an_existing_part_file(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    part = cache / "partial" / f"{key(url)}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload[:1_000_000])
    got = get(url, cache, sha256=sha(payload))
    assert got.path.read_bytes() == payload
    (only,) = origin.gets()
    assert (only["range"], only["status"]) == ("bytes=1000000-", 206)
    assert not part.exists()


@pytest.mark.parametrize("extra", [0, 100], ids=["part-complete", "part-too-long"])
def test_416_on_a_part_as_long_as_or_longer_than_the_file(origin, payload, cache, extra):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    part = cache / "partial" / f"{key(url)}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(payload + os.urandom(extra))
    got = get(url, cache, sha256=sha(payload))
    assert got.path.read_bytes() == payload
    expected = [416] if extra == 0 else [416, 200]  # complete: verify it; too long: start over
    assert [e["status"] for e in origin.gets()] == expected


# --------------------------------------------------------------------------- 7. no Range support

def test_server_without_range_support_restarts_from_zero(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.ranges = False
    url = origin.url("/w/model.pth")
    part = cache / "partial" / f"{key(url)}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(os.urandom(500_000))  # not even a prefix of the file: appending would corrupt it
    got = get(url, cache, sha256=sha(payload))
    assert got.path.read_bytes() == payload
    (only,) = origin.gets()
    assert (only["range"], only["status"]) == ("bytes=500000-", 200)


# --------------------------------------------------------------------------- 8. two processes, one download

def _fetch_in_child(url: str, digest: str, cache: str, barrier, results) -> None:
    from zoo.fetch import FetchRequest, fetch

    try:
        barrier.wait(timeout=60)
        got = fetch(FetchRequest(url=url, sha256=digest), cache_dir=Path(cache), progress=False)
        results.put((str(got.path), got.sha256, got.cache_hit))
    except BaseException as e:  # report, so the parent fails at once instead of waiting for a result
        results.put(("error", repr(e), None))


def test_two_processes_download_once(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    origin.throttle = 0.02  # ~1 s for 3 MB: the second process arrives while the first is still downloading
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_fetch_in_child, args=(origin.url("/w/model.pth"), sha(payload), str(cache),
                                                       barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(g[0] != "error" for g in got), got
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(origin.gets()) == 1 and origin.gets()[0]["status"] == 200
    assert {g[0] for g in got} == {str(cache / "blobs" / "sha256" / sha(payload))}
    assert {g[1] for g in got} == {sha(payload)}
    assert sorted(g[2] for g in got) == [False, True]
    assert Path(got[0][0]).read_bytes() == payload


# --------------------------------------------------------------------------- 9. offline

def test_offline_with_an_empty_cache_fails_without_a_request(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    with pytest.raises(FetchError) as err:
        get(url, cache, sha256=sha(payload), offline=True)
    msg = assert_actionable(err, url, cache / "blobs" / "sha256" / sha(payload))
    assert msg.startswith("offline")
    assert origin.gets() == []


def test_offline_after_a_download_is_a_cache_hit(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    get(url, cache, sha256=sha(payload))
    got = get(url, cache, sha256=sha(payload), offline=True)
    assert got.cache_hit and got.path.read_bytes() == payload
    assert len(origin.gets()) == 1


# --------------------------------------------------------------------------- 10. tampered blob

def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[12345] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_blob_is_detected_and_downloaded_again(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    first = get(url, cache)  # no registry digest: the ref's digest is what the blob must still match
    _tamper(first.path)
    again = get(url, cache)
    assert not again.cache_hit
    assert again.path == first.path and again.path.read_bytes() == payload
    assert len(origin.gets()) == 2


def test_tampered_blob_offline_is_a_clear_error(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    first = get(url, cache, sha256=sha(payload))
    _tamper(first.path)
    with pytest.raises(FetchError) as err:
        get(url, cache, sha256=sha(payload), offline=True)
    msg = assert_actionable(err, url, first.path)
    assert "no longer matches" in msg
    assert not first.path.exists()
    assert len(origin.gets()) == 1


# --------------------------------------------------------------------------- 11. client errors

@pytest.mark.parametrize("status,tries", [(404, 1), (403, 1), (429, 2), (500, 2)])
def test_client_errors_fail_fast_server_errors_retry(origin, payload, cache, status, tries):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth" if status != 404 else "/w/missing.pth")
    origin.faults.append(status)
    if tries == 1:
        with pytest.raises(FetchError) as err:
            get(url, cache)
        msg = assert_actionable(err, url, cache / "manual" / url.rsplit("/", 1)[-1])
        assert f"HTTP {status}" in msg
    else:
        assert get(url, cache).path.read_bytes() == payload
    assert len(origin.gets()) == tries


# --------------------------------------------------------------------------- odds and ends

def test_bad_requests_are_user_errors(cache):
    with pytest.raises(FetchError):
        fetch(FetchRequest(), cache_dir=cache)
    with pytest.raises(FetchError):
        fetch(FetchRequest(url="http://x/a", hf_hub_id="a/b"), cache_dir=cache)
    with pytest.raises(FetchError):
        fetch(FetchRequest(url="ftp://x/a.pth"), cache_dir=cache)
    with pytest.raises(FetchError, match="64 hex"):
        fetch(FetchRequest(url="http://x/a.pth", sha256="abc"), cache_dir=cache)
    with pytest.raises(FetchError, match="does not start with"):
        fetch(FetchRequest(url="http://x/a.pth", sha256="a" * 64, sha256_prefix="bbbbbbbb"), cache_dir=cache)


def test_a_broken_cache_folder_is_a_one_line_error(origin, payload, cache):
    origin.files["/w/model.pth"] = payload
    url = origin.url("/w/model.pth")
    cache.mkdir()
    (cache / "partial").write_text("a file where a folder should be")
    with pytest.raises(FetchError) as err:
        get(url, cache, sha256=sha(payload))
    assert "partial" in assert_actionable(err, url, cache / "blobs" / "sha256" / sha(payload))


def test_default_cache_dir_honours_zoo_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOO_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ZOO_CACHE")
    assert default_cache_dir().name == "resnext-zoo"


def test_default_cache_is_used_when_none_given(origin, payload, tmp_path):
    # conftest points ZOO_CACHE at a folder of this test's own
    origin.files["/w/model.pth"] = payload
    got = fetch(FetchRequest(url=origin.url("/w/model.pth")), progress=False, retry=FAST)
    assert got.path == Path(os.environ["ZOO_CACHE"]) / "blobs" / "sha256" / sha(payload)


def test_sha256_file_matches_hashlib(tmp_path, payload):
    p = tmp_path / "f"
    p.write_bytes(payload)
    assert sha256_file(p) == sha(payload)


def test_progress_goes_to_stderr(origin, payload, cache, capfd):
    origin.files["/w/model.pth"] = payload
    get(origin.url("/w/model.pth"), cache, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    assert "model.pth" in err and "3.1" in err  # label and size (3.1 MB)


# --------------------------------------------------------------------------- 13. bounded downloads

def partials(cache: Path) -> List[Path]:
    return sorted((cache / "partial").iterdir()) if (cache / "partial").exists() else []


def test_endless_body_stops_at_the_size_bound_and_is_deleted(origin, cache):
    origin.endless.add("/w/endless.pth")
    url = origin.url("/w/endless.pth")
    start = time.monotonic()
    with pytest.raises(FetchError) as err:
        get(url, cache, max_bytes=2 * MB)
    assert time.monotonic() - start < 5
    msg = assert_actionable(err, url, cache / "manual" / "endless.pth")
    assert "went past 2,097,152 bytes" in msg and "no size announced" in msg, msg
    written = int(re.search(r"deleted the ([\d,]+) bytes written", msg).group(1).replace(",", ""))
    assert 0 < written <= 2 * MB
    assert partials(cache) == [] and blobs(cache) == [] and refs(cache) == []
    assert len(origin.gets()) == 1, "a bound is final: not retried"


def test_announced_size_above_the_bound_is_refused_before_writing(origin, payload, cache):
    origin.files["/w/big.pth"] = payload
    with pytest.raises(FetchError) as err:
        get(origin.url("/w/big.pth"), cache, max_bytes=MB)
    assert f"announces {len(payload):,} bytes, more than the {MB:,}" in str(err.value)
    assert "deleted the 0 bytes written" in str(err.value)
    assert partials(cache) == [] and blobs(cache) == []


def test_trickling_server_stops_at_the_total_time_bound(origin, cache):
    origin.files["/w/slow.pth"] = os.urandom(100)
    origin.trickle["/w/slow.pth"] = 1.0  # one byte a second: each read arrives well inside the read time-out
    url = origin.url("/w/slow.pth")
    start = time.monotonic()
    with pytest.raises(FetchError) as err:
        get(url, cache, retry=RetryPolicy(attempts=4, backoff_initial=0.01, backoff_max=0.05, timeout=5.0,
                                          total_timeout=1.5))
    assert 1.5 <= time.monotonic() - start < 3.5
    assert "still not complete after 1.5 s" in assert_actionable(err, url, cache / "manual" / "slow.pth")
    assert partials(cache) == [] and blobs(cache) == []


def test_size_bound_from_the_registry():
    from zoo.fetch import request_for, size_bound
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant, select_weights

    reg = load_registry()
    v = resolve_variant(reg, "resnext50_32x4d")
    tv = select_weights(reg, v, "torchvision", "IMAGENET1K_V1")  # published: 95.789 MB
    assert size_bound(tv) == size_bound(tv, v) == math.ceil(95.789 * MB * 1.05) + MB
    assert request_for(tv).max_bytes == size_bound(tv)
    mm = select_weights(reg, v, "mmcls", None)  # no published file size: the architecture's estimate
    assert size_bound(mm) is None
    assert request_for(mm, v).max_bytes == 3 * v.size.fp32_bytes + 64 * MB


def fetch_cli(origin: "Origin", path: str, data: bytes, tmp_path: Path, *extra: str):
    """`zoo fetch` of resnext50_32x4d's torchvision entry, pointed at the local server."""
    return run_zoo("fetch", "model=resnext50_32x4d", "source=torchvision", f"model.weights.0.url={origin.url(path)}",
                   f"model.weights.0.sha256_prefix={sha(data)[:8]}", f"cache_dir={tmp_path / 'cache'}",
                   "progress=false", *extra, timeout=60)


def test_cli_json_on_stdout_is_only_json(origin, payload, tmp_path):
    origin.files["/w/rx50.pth"] = payload
    r = fetch_cli(origin, "/w/rx50.pth", payload, tmp_path, "format=json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # a log line before the JSON would make this fail
    assert (doc["sha256"], doc["from"], doc["size"]) == (sha(payload), "network", len(payload))


def test_cli_total_time_bound_is_one_line_and_leaves_nothing(origin, tmp_path):
    data = os.urandom(100)
    origin.files["/w/slow.pth"] = data
    origin.trickle["/w/slow.pth"] = 1.0
    r = fetch_cli(origin, "/w/slow.pth", data, tmp_path, "download_timeout=1")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "still not complete after 1 s" in line and "download_timeout=SECONDS" in line, line
    assert partials(tmp_path / "cache") == [] and blobs(tmp_path / "cache") == []


# --------------------------------------------------------------------------- 12. Hugging Face Hub

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Protocol fake of the Hub's ``HEAD|GET /{repo_id}/resolve/{revision}/{filename}``, with just what
    huggingface_hub.hf_hub_download reads: X-Repo-Commit (required), X-Linked-Etag / ETag (required; the
    LFS sha256), X-Linked-Size / Content-Length, and X-Error-Code on 404s. No Xet headers, so plain HTTP.
    Tests count only /resolve/ requests: with telemetry on, huggingface_hub would also GET
    /api/agent-harnesses once per process (the fixture turns that off)."""

    def __init__(self) -> None:
        self.files: Dict[Tuple[str, str], bytes] = {}
        self.etags: Dict[Tuple[str, str], str] = {}   # override: claim a digest the bytes do not have
        self.requests: List[Tuple[str, str]] = []
        self.lock = threading.Lock()
        self.base = ""

    @property
    def log(self) -> List[Tuple[str, str]]:
        with self.lock:
            return [r for r in self.requests if "/resolve/" in r[1]]


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, with_body: bool) -> None:
        hub: FakeHub = self.server.state  # type: ignore[attr-defined]
        with hub.lock:
            hub.requests.append((self.command, self.path))
        head, sep, filename = self.path.partition("/resolve/")
        repo_id = head.lstrip("/")
        revision, _, filename = filename.partition("/")
        body = hub.files.get((repo_id, filename)) if sep else None
        if body is None:
            known = any(r == repo_id for r, _ in hub.files)
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound" if known else "RepoNotFound")
            self.send_header("X-Error-Message", "Entry not found" if known else "Repository not found")
            if known:
                self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = hub.etags.get((repo_id, filename), sha(body))
        self.send_response(200)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("X-Linked-Etag", f'"{etag}"')
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Linked-Size", str(len(body)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            _send_body(self, body, 0)

    def do_HEAD(self) -> None:
        self._answer(False)

    def do_GET(self) -> None:
        self._answer(True)


@pytest.fixture
def hub(monkeypatch):
    # Imported before HF_ENDPOINT is set: huggingface_hub reads its environment once, at import, so
    # this proves zoo.fetch passes the endpoint per call, and leaves no fake endpoint behind for
    # later tests in this process.
    hf_constants = pytest.importorskip("huggingface_hub.constants")
    # What HF_HUB_DISABLE_TELEMETRY=1 / HF_HUB_DISABLE_IMPLICIT_TOKEN=1 would have set at import:
    # no agent-registry request to the real Hub, no stored token sent to the fake.
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    st = FakeHub()
    server, _ = _serve(_HubHandler, st)
    monkeypatch.setenv("HF_ENDPOINT", st.base)
    yield st
    server.shutdown()
    server.server_close()


REPO = "timm/resnext50_32x4d.a1h_in1k"


def hub_get(cache: Path, **kw):
    fields = {k: kw.pop(k) for k in ("sha256", "filename") if k in kw}
    return fetch(FetchRequest(hf_hub_id=REPO, **fields), cache_dir=cache, progress=False, retry=FAST, **kw)


def test_hub_download_is_verified_and_ingested(hub, payload, cache):
    hub.files[(REPO, "model.safetensors")] = payload
    got = hub_get(cache)
    assert got.path == cache / "blobs" / "sha256" / sha(payload)
    assert got.path.read_bytes() == payload
    assert (got.origin, got.sha256, got.cache_hit) == (f"hf://{REPO}/model.safetensors", sha(payload), False)
    assert (cache / "hf" / "models--timm--resnext50_32x4d.a1h_in1k" / "blobs" / sha(payload)).is_file()
    assert [m for m, _ in hub.log] == ["HEAD", "GET"]
    assert hub.log[0][1] == f"/{REPO}/resolve/main/model.safetensors"

    again = hub_get(cache, sha256=sha(payload))
    assert again.cache_hit and again.path == got.path
    assert len(hub.log) == 2, "a cache hit must not touch the Hub"


def test_hub_offline_uses_the_hub_cache_then_fails_clearly(hub, payload, cache, tmp_path):
    hub.files[(REPO, "model.safetensors")] = payload
    hub_get(cache)
    for p in blobs(cache) + refs(cache):
        p.unlink()
    got = hub_get(cache, offline=True)  # re-ingested from huggingface_hub's cache, no request
    assert got.path.read_bytes() == payload and len(hub.log) == 2

    empty = tmp_path / "empty"
    with pytest.raises(FetchError) as err:
        hub_get(empty, offline=True)
    url = f"{hub.base}/{REPO}/resolve/main/model.safetensors"
    msg = assert_actionable(err, url, empty / "manual" / "timm--resnext50_32x4d.a1h_in1k--model.safetensors")
    assert REPO in msg and msg.startswith("offline")
    assert len(hub.log) == 2


def test_hub_file_that_does_not_match_its_lfs_digest_is_rejected(hub, payload, cache):
    hub.files[(REPO, "model.safetensors")] = payload
    hub.etags[(REPO, "model.safetensors")] = sha(b"what the Hub says it holds")
    with pytest.raises(FetchError) as err:
        hub_get(cache)
    assert "failed verification" in str(err.value) and REPO in str(err.value)
    assert blobs(cache) == [] and refs(cache) == []
    assert [m for m, _ in hub.log] == ["HEAD", "GET", "HEAD", "GET"]  # the second try bypasses its cache
    hf_blobs = cache / "hf" / "models--timm--resnext50_32x4d.a1h_in1k" / "blobs"
    assert not [p for p in hf_blobs.iterdir() if not p.name.endswith(".incomplete")]


def test_hub_file_that_does_not_match_the_registry_digest_is_rejected(hub, payload, cache):
    hub.files[(REPO, "model.safetensors")] = payload
    claimed = sha(b"registry digest")
    with pytest.raises(FetchError) as err:
        hub_get(cache, sha256=claimed)
    assert_actionable(err, f"{hub.base}/{REPO}/resolve/main/model.safetensors", cache / "blobs" / "sha256" / claimed)
    assert blobs(cache) == [] and refs(cache) == []
    assert [m for m, _ in hub.log] == ["HEAD", "GET", "HEAD", "GET"]


def test_hub_missing_file_is_one_actionable_line(hub, payload, cache):
    hub.files[(REPO, "model.safetensors")] = payload
    with pytest.raises(FetchError) as err:
        hub_get(cache, filename="pytorch_model.bin")
    msg = assert_actionable(err, f"{hub.base}/{REPO}/resolve/main/pytorch_model.bin",
                            cache / "manual" / "timm--resnext50_32x4d.a1h_in1k--pytorch_model.bin")
    assert "RemoteEntryNotFoundError" in msg
    assert hub.log == [("HEAD", f"/{REPO}/resolve/main/pytorch_model.bin")]


@pytest.mark.parametrize("etag", ["lfs", "git"])
def test_hub_blob_tampered_in_the_cache_is_fetched_again(hub, payload, cache, etag):
    hub.files[(REPO, "model.safetensors")] = payload
    if etag == "git":  # a non-LFS file: its ETag is a git sha1, no digest to check the content against
        hub.etags[(REPO, "model.safetensors")] = hashlib.sha1(payload).hexdigest()
    first = hub_get(cache)
    _tamper(first.path)  # also tampers huggingface_hub's copy when the two are hardlinked
    again = hub_get(cache)
    assert not again.cache_hit and again.path == first.path
    assert again.path.read_bytes() == payload
    assert [m for m, _ in hub.log] == ["HEAD", "GET", "HEAD", "GET"]
