"""PROTOCOL FAKE of the Hugging Face Hub's HTTP API, for tests only: not a Hub.

It answers the requests huggingface_hub 2.x makes for a publish, as read from its source:
``POST /api/repos/create``, ``POST /api/models/{repo}/paths-info/{rev}`` (form data),
``POST /api/validate-yaml``, ``POST /api/models/{repo}/preupload/{rev}``,
``POST /{repo}.git/info/lfs/objects/batch`` (basic transfer), ``PUT`` of an LFS object to the storage URL
the batch answer names, ``POST /api/models/{repo}/commit/{rev}`` (ndjson) and
``POST /api/models/{repo}/tag/{rev}``. Repositories live in memory with a commit history; files of a
commit are regular (base64 in the commit) or LFS (an object uploaded before, named by sha256).

Every request is recorded (route, headers, parsed body) so tests can assert what was sent. Every API
request must carry ``Authorization: Bearer <token>``; the storage PUT needs none (presigned, as on S3).
``fail(route, *faults)`` makes the next calls of a route answer an HTTP status or drop the connection.
No Xet, pull requests, branches other than main, or permission model.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

import yaml

LFS_SUFFIXES = (".onnx", ".bin", ".mindir", ".npz", ".npy", ".data", ".pdparams", ".pth")
REGULAR_LIMIT = 10 * 2**20
GITATTRIBUTES = b"*.onnx filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
RESET = "reset"  # a fault: close the connection without answering

ROUTES = [
    ("create", "POST", re.compile(r"^/api/repos/create$")),
    ("paths-info", "POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)$")),
    ("validate-yaml", "POST", re.compile(r"^/api/validate-yaml$")),
    ("preupload", "POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)$")),
    ("lfs-batch", "POST", re.compile(r"^/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$")),
    ("lfs-put", "PUT", re.compile(r"^/storage/(?P<oid>[0-9a-f]{64})$")),
    ("commit", "POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)$")),
    ("tag", "POST", re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tag/(?P<rev>[^/]+)$")),
]


@dataclass
class Blob:
    size: int
    sha256: str
    content: Optional[bytes]  # regular files; None for LFS (the object store holds it)

    @property
    def git_oid(self) -> str:
        return hashlib.sha1(f"blob {self.size}\0".encode() + (self.content or b"")).hexdigest()


@dataclass
class Repo:
    commits: List[Dict[str, Any]] = field(default_factory=list)  # {"oid", "summary", "description", "files"}
    tags: Dict[str, str] = field(default_factory=dict)

    @property
    def head(self) -> Dict[str, Any]:
        return self.commits[-1]

    def revision(self, rev: str) -> Optional[Dict[str, Any]]:
        if rev == "main":
            return self.head
        if rev in self.tags:
            rev = self.tags[rev]
        return next((c for c in self.commits if c["oid"] == rev), None)


@dataclass
class Request:
    route: str
    method: str
    path: str
    headers: Dict[str, str]
    body: Any  # parsed JSON / form / ndjson lines; bytes length for the storage PUT
    status: int = 0


class FakeHub:
    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: Dict[str, Repo] = {}
        self.objects: Dict[str, bytes] = {}  # LFS object store: sha256 -> content
        self.requests: List[Request] = []
        self.faults: Dict[str, List[Any]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, route: str, *faults: Any) -> None:
        """The next len(faults) calls of ``route`` answer these statuses (or RESET) instead."""
        self.faults.setdefault(route, []).extend(faults)

    def calls(self, route: str) -> List[Request]:
        return [r for r in self.requests if r.route == route]

    def file_bytes(self, repo: str, path: str, rev: str = "main") -> bytes:
        blob = self.repos[repo].revision(rev)["files"][path]
        return blob.content if blob.content is not None else self.objects[blob.sha256]

    # ------------------------------------------------------------ endpoints: (status, json body)

    def create(self, body: Dict[str, Any], m) -> Tuple[int, Any]:
        repo = f"{body['organization']}/{body['name']}"
        if repo in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo}"}
        self.repos[repo] = Repo()
        blob = Blob(len(GITATTRIBUTES), hashlib.sha256(GITATTRIBUTES).hexdigest(), GITATTRIBUTES)
        self._add_commit(self.repos[repo], "initial commit", "", {".gitattributes": blob})
        return 200, {"url": f"{self.endpoint}/{repo}"}

    def paths_info(self, form: Dict[str, List[str]], m) -> Tuple[int, Any]:
        commit = self._repo(m).revision(m["rev"])
        if commit is None:
            return 404, {"error": "Revision not found"}
        out = []
        for path in form.get("paths", []):
            blob = commit["files"].get(path)
            if blob is None:
                continue
            info = {"type": "file", "path": path, "size": blob.size, "oid": blob.git_oid}
            if blob.content is None:
                info["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
            out.append(info)
        return 200, out

    def validate_yaml(self, body: Dict[str, Any], m) -> Tuple[int, Any]:
        content = body.get("content", "")
        try:
            front = content.split("---\n", 2)[1] if content.startswith("---\n") else None
            meta = yaml.safe_load(front) if front is not None else None
        except yaml.YAMLError as e:
            return 400, {"errors": [{"message": f"invalid YAML: {e}"}]}
        if not isinstance(meta, dict):
            return 400, {"errors": [{"message": "no metadata block"}]}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, body: Dict[str, Any], m) -> Tuple[int, Any]:
        head = self._repo(m).head["files"]
        files = []
        for f in body["files"]:
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > REGULAR_LIMIT
            blob = head.get(f["path"])
            oid = None if blob is None else (blob.sha256 if blob.content is None else blob.git_oid)
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return 200, {"files": files}

    def lfs_batch(self, body: Dict[str, Any], m) -> Tuple[int, Any]:
        objects = []
        for o in body["objects"]:
            entry = {"oid": o["oid"], "size": o["size"]}
            if o["oid"] not in self.objects:
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/storage/{o['oid']}"}}
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def lfs_put(self, data: bytes, m) -> Tuple[int, Any]:
        if hashlib.sha256(data).hexdigest() != m["oid"]:
            return 400, {"error": "content does not match its oid"}
        self.objects[m["oid"]] = data
        return 200, {}

    def commit(self, lines: List[Dict[str, Any]], m) -> Tuple[int, Any]:
        repo = self._repo(m)
        header = lines[0]["value"]
        files = dict(repo.head["files"])
        for op in lines[1:]:
            v = op["value"]
            if op["key"] == "file":
                data = base64.b64decode(v["content"])
                files[v["path"]] = Blob(len(data), hashlib.sha256(data).hexdigest(), data)
            elif op["key"] == "lfsFile":
                if v["oid"] not in self.objects:
                    return 422, {"error": f"LFS object {v['oid']} was never uploaded"}
                files[v["path"]] = Blob(len(self.objects[v["oid"]]), v["oid"], None)
            else:
                return 400, {"error": f"unsupported operation {op['key']}"}
        oid = self._add_commit(repo, header["summary"], header.get("description", ""), files)
        return 200, {"commitUrl": f"{self.endpoint}/{m['repo']}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}

    def tag(self, body: Dict[str, Any], m) -> Tuple[int, Any]:
        repo = self._repo(m)
        if body["tag"] in repo.tags:
            return 409, {"error": "Tag already exists"}
        commit = repo.revision(m["rev"])
        if commit is None:
            return 404, {"error": "Revision not found"}
        repo.tags[body["tag"]] = commit["oid"]
        return 200, {}

    def _repo(self, m) -> Repo:
        return self.repos[m["repo"]]

    @staticmethod
    def _add_commit(repo: Repo, summary: str, description: str, files: Dict[str, Blob]) -> str:
        parent = repo.commits[-1]["oid"] if repo.commits else ""
        state = sorted((p, b.sha256) for p, b in files.items())
        oid = hashlib.sha1(f"{parent}\n{summary}\n{state}".encode()).hexdigest()
        repo.commits.append({"oid": oid, "summary": summary, "description": description, "files": files})
        return oid


def _handler(hub: FakeHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            raw = self._read_body()
            path = urlparse(self.path).path
            route, match = next(((n, p.match(path)) for n, meth, p in ROUTES
                                 if meth == self.command and p.match(path)), ("unknown", None))
            body = _parse(route, raw, self.headers.get("Content-Type", ""))
            rec = Request(route, self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                          len(body) if route == "lfs-put" else body)
            with hub._lock:
                hub.requests.append(rec)
                fault = hub.faults.get(route, []).pop(0) if hub.faults.get(route) else None
            if fault == RESET:
                rec.status = -1
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                return self._answer(rec, fault, {"error": f"injected {fault}"})
            if match is None:
                return self._answer(rec, 404, {"error": f"no such endpoint in the fake: {self.command} {path}"})
            if route != "lfs-put" and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._answer(rec, 401, {"error": "Invalid credentials in Authorization header"})
            with hub._lock:
                status, answer = getattr(hub, route.replace("-", "_"))(body, match.groupdict())
            self._answer(rec, status, answer)

        def _answer(self, rec: Request, status: int, answer: Any) -> None:
            rec.status = status
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if isinstance(answer, dict) and "error" in answer:
                self.send_header("X-Error-Message", answer["error"])
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _parse(route: str, raw: bytes, content_type: str) -> Any:
    if route == "lfs-put":
        return raw
    if route == "commit":
        return [json.loads(line) for line in raw.splitlines() if line.strip()]
    if "application/x-www-form-urlencoded" in content_type:
        return parse_qs(raw.decode())
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return raw
