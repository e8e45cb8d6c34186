"""out_dir and cache_dir on object storage, against a real S3 API server on 127.0.0.1 (moto in server mode).

Each test names its own prefix in one bucket. "Machines" are processes with their own ZOO_CACHE: what
one machine keeps locally, another does not see.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import run_zoo

boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "zoo"
SECRET = "the-secret-key-that-must-not-leak"
ART = ["model=resnext50_32x4d", "source=torchvision", "target=onnx", "weights=random"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


@pytest.fixture(scope="module")
def s3():
    port = _free_port()
    proc = _moto(port, {})
    endpoint = f"http://127.0.0.1:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield {"endpoint": endpoint, "client": client, "env": {**creds, "AWS_ENDPOINT_URL": endpoint}}
    proc.kill()
    proc.wait()


def keys(s3, prefix: str) -> list:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def machine(s3, tmp_path: Path, name: str) -> dict:
    return {**s3["env"], "ZOO_CACHE": str(tmp_path / name / "cache")}


def test_a_sweep_of_two_jobs_for_one_artifact_builds_once_and_the_other_takes_its_result(s3, tmp_path):
    url = f"s3://{BUCKET}/sweep"
    proc = run_zoo("-m", "convert", *ART, f"out_dir={url}", "progress=false,true", "hydra/launcher=zoo_joblib",
                   env=machine(s3, tmp_path, "a"), cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    heads = [line for line in proc.stdout.splitlines() if line.startswith("resnext50_32x4d  torchvision")]
    assert len(heads) == 2 and sum("(cache hit)" in h for h in heads) == 1, proc.stdout
    folder = "sweep/resnext50_32x4d/torchvision/IMAGENET1K_V1/onnx"
    m = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=f"{folder}/manifest.json")["Body"].read())
    # every file the manifest lists is in the bucket with its recorded size and sha256; no lease is left
    for f in m["artifact"]["files"]:
        body = s3["client"].get_object(Bucket=BUCKET, Key=f"{folder}/{f['name']}")["Body"].read()
        assert len(body) == f["size"] and hashlib.sha256(body).hexdigest() == f["sha256"]
    assert not keys(s3, "sweep/.leases/")
    assert SECRET not in proc.stdout + proc.stderr and SECRET not in json.dumps(m)

    # another machine: a cache hit from the remote manifest, without downloading the artifact
    other = machine(s3, tmp_path, "b")
    again = run_zoo("convert", *ART, f"out_dir={url}", "progress=false", env=other, cwd=tmp_path)
    assert again.returncode == 0 and "(cache hit)" in again.stdout, again.stderr
    assert not (tmp_path / "b" / "cache" / "stores").exists() or not any(
        (tmp_path / "b" / "cache" / "stores").rglob("*.onnx"))

    # results, report, gc and publish read the store
    res = run_zoo("results", f"out_dir={url}", "format=json", env=other, cwd=tmp_path)
    doc = json.loads(res.stdout)
    assert res.returncode == 0 and doc["out_dir"] == url and [r["status"] for r in doc["rows"]] == ["passed"]
    rep = run_zoo("report", f"out_dir={url}", "report_file=r.html", env=other, cwd=tmp_path)
    assert rep.returncode == 0 and url in (tmp_path / "r.html").read_text()
    for name, body in (("model.onnx", b"x" * 10), ("manifest.json", b"{}")):  # artifact-shaped, of no known source
        s3["client"].put_object(Bucket=BUCKET, Key=f"sweep/resnext50_32x4d/nosuchsource/x/onnx/{name}", Body=body)
    dry = run_zoo("gc", f"out_dir={url}", "stale_hours=0", "format=json", env=other, cwd=tmp_path)
    rows = json.loads(dry.stdout)["rows"]
    assert [r["path"] for r in rows] == [f"{url}/resnext50_32x4d/nosuchsource"] and rows[0]["action"] == "would remove"
    assert keys(s3, "sweep/resnext50_32x4d/nosuchsource/")  # a dry run by default
    run_zoo("gc", f"out_dir={url}", "stale_hours=0", "apply=true", env=other, cwd=tmp_path)
    assert not keys(s3, "sweep/resnext50_32x4d/nosuchsource/") and keys(s3, f"{folder}/manifest.json")
    # bench downloads the artifact, and its figures go back into the bucket's manifest
    bench = run_zoo("bench", "model=resnext50_32x4d", f"out_dir={url}", "batches=1", "max_seconds=2", "window=0.2",
                    "progress=false", "format=json", env=other, cwd=tmp_path, timeout=300)
    assert bench.returncode == 0, bench.stderr[-2000:]
    measured = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=f"{folder}/manifest.json")["Body"].read())
    machine_id = json.loads(bench.stdout)["machine"]["id"]
    assert measured["key"] == m["key"] and measured["bench"][machine_id]["points"][0]["batch"] == 1
    hub = tmp_path / "hub"
    pub = run_zoo("publish", *ART[:3], f"out_dir={url}", "progress=false", "hub=local", f"hub.root={hub}",
                  "hub.org=t", env=other, cwd=tmp_path)
    assert pub.returncode == 0, pub.stderr
    onnx = next(hub.rglob("model.onnx")).read_bytes()
    assert hashlib.sha256(onnx).hexdigest() == next(f["sha256"] for f in m["artifact"]["files"] if f["name"] == "model.onnx")


# Loaded by every Python process below; in the one that runs with ZOO_TEST_KILL_UPLOAD set, the process
# kills itself (SIGKILL: no clean-up runs) after its second file has gone up.
_KILL_MID_UPLOAD = textwrap.dedent('''
    import os, signal
    if os.environ.get("ZOO_TEST_KILL_UPLOAD"):
        import zoo.remote.location as location
        _put, _count = location.Location.put, [0]
        def put(self, local, rel):
            _put(self, local, rel)
            _count[0] += 1
            if _count[0] == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        location.Location.put = put
''')


def test_a_job_killed_mid_upload_leaves_no_visible_artifact_and_the_next_run_completes_it(s3, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_KILL_MID_UPLOAD)
    url = f"s3://{BUCKET}/killed"
    env = {**machine(s3, tmp_path, "a"), "PYTHONPATH": str(hooks), "ZOO_TEST_KILL_UPLOAD": "1"}
    args = ["convert", "model=resnext50_32x4d", "source=torchvision", "target=onnx", "precision=fp16",
            "weights=random", f"out_dir={url}", "progress=false"]
    killed = run_zoo(*args, "golden=true", env=env, cwd=tmp_path)
    assert killed.returncode == -9, killed.stderr[-2000:]
    folder = "killed/resnext50_32x4d/torchvision/IMAGENET1K_V1/onnx-fp16"
    assert len(keys(s3, f"{folder}/")) == 2 and not keys(s3, f"{folder}/manifest.json")  # half of it, no manifest
    assert keys(s3, "killed/.leases/")  # the dead job's lease
    res = run_zoo("results", f"out_dir={url}", "format=json", env=machine(s3, tmp_path, "b"), cwd=tmp_path)
    assert json.loads(res.stdout)["rows"] == []  # invisible
    env.pop("ZOO_TEST_KILL_UPLOAD")
    done = run_zoo(*args, "golden=true", env=env, cwd=tmp_path)  # same host: the dead pid frees the lease at once
    assert done.returncode == 0 and "[PASSED]" in done.stdout, done.stderr[-2000:]
    m = json.loads(s3["client"].get_object(Bucket=BUCKET, Key=f"{folder}/manifest.json")["Body"].read())
    assert sorted(keys(s3, f"{folder}/")) == sorted([f"{folder}/{f['name']}" for f in m["artifact"]["files"]]
                                                    + [f"{folder}/manifest.json"])
    assert not keys(s3, "killed/.leases/")


class _Origin(BaseHTTPRequestHandler):
    body = os.urandom(2 * 2**20)
    gets = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        with _Origin.lock:
            _Origin.gets += 1
        time.sleep(1.0)  # long enough that both processes ask before the first one is done
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


_FETCH = ("import sys; from zoo.fetch import FetchRequest, fetch; "
          "g = fetch(FetchRequest(url=sys.argv[1], sha256=sys.argv[2]), cache_dir=sys.argv[3], progress=False); "
          "print(g.sha256, g.cache_hit)")


def test_the_download_cache_in_the_bucket_downloads_once_for_two_machines_and_never_keeps_a_bad_file(s3, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/resnext.pth"
    digest = hashlib.sha256(_Origin.body).hexdigest()
    cache = f"s3://{BUCKET}/cache"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", _FETCH, url, digest, cache], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**os.environ, **machine(s3, tmp_path, n)})
                 for n in ("a", "b")]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert _Origin.gets == 1  # one download from the origin
        assert sorted(o.split()[0] for o, _ in outs) == [digest, digest]
        blob = f"cache/blobs/sha256/{digest}"
        assert s3["client"].get_object(Bucket=BUCKET, Key=blob)["Body"].read() == _Origin.body

        # a blob that went bad in the bucket is caught before use, and replaced from the origin
        s3["client"].put_object(Bucket=BUCKET, Key=blob, Body=b"not the checkpoint")
        fresh = subprocess.run([sys.executable, "-c", _FETCH, url, digest, cache], capture_output=True, text=True,
                               env={**os.environ, **machine(s3, tmp_path, "c")}, timeout=300)
        assert fresh.returncode == 0 and fresh.stdout.split()[0] == digest, fresh.stderr
        assert "failed verification" in fresh.stderr and _Origin.gets == 2
        assert s3["client"].get_object(Bucket=BUCKET, Key=blob)["Body"].read() == _Origin.body
    finally:
        server.shutdown()
        server.server_close()


def test_a_wrong_credential_or_an_unreachable_endpoint_is_one_line_naming_the_url_and_what_to_set(s3, tmp_path):
    port = _free_port()
    strict = _moto(port, {"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # this one checks every request's key
    try:
        wrong = {**s3["env"], "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIANOTAKEY0000000"}
        proc = run_zoo("convert", *ART, f"out_dir=s3://{BUCKET}/x", env=wrong, cwd=tmp_path, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"out_dir=s3://{BUCKET}/x" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0]
        assert SECRET not in proc.stdout + proc.stderr
    finally:
        strict.kill()
        strict.wait()
    closed = _free_port()
    for args in ([f"out_dir=s3://{BUCKET}/x"], [f"cache_dir=s3://{BUCKET}/c", "weights=pretrained"]):
        proc = run_zoo("convert", *ART[:3], *args, f"store.endpoint_url=http://127.0.0.1:{closed}", "progress=false",
                       env=s3["env"], cwd=tmp_path, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"s3://{BUCKET}/" in lines[0] and "store.endpoint_url" in lines[0] and f":{closed}" in lines[0]


def test_a_local_out_dir_never_imports_fsspec(tmp_path):
    # cli.main, not the program (python -m zoo ends the process when the command is done, zoo.fast_exit)
    code = ("import sys; sys.argv = ['zoo', 'results', 'out_dir=.', 'format=json']\n"
            "from zoo.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('fsspec' in sys.modules, 's3fs' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "False False", proc.stdout + proc.stderr
