"""The on-disk cache: content-addressed blobs, one small ref per origin, partials and locks.

    <cache>/blobs/sha256/<hex>          verified files, named by their digest
    <cache>/refs/<sha256(origin)>.json  {origin, sha256, size}: which blob an origin resolved to
    <cache>/partial/<key>.part          an interrupted download, resumed with a Range request
    <cache>/locks/<key>.lock            one downloader per origin across processes
    <cache>/hf/                         huggingface_hub's own cache, ingested into blobs/
    <cache>/manual/                     where error messages suggest saving a file fetched by hand

Every file that other readers may see is written to a temporary name in its final folder, fsynced
and renamed into place, so a crash leaves the old state or the new one, never half a file.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from zoo.fetch._common import Expect, sha256_file

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    path: Path
    sha256: str
    size: int


def _fsync_dir(folder: Path) -> None:
    # A rename is only durable once its directory entry is; not every platform lets us open a folder.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser()

    @staticmethod
    def key(origin: str) -> str:
        return hashlib.sha256(origin.encode("utf-8")).hexdigest()

    def blob(self, sha256: str) -> Path:
        return self.root / "blobs" / "sha256" / sha256

    def ref(self, origin: str) -> Path:
        return self.root / "refs" / f"{self.key(origin)}.json"

    def part(self, origin: str) -> Path:
        return self.root / "partial" / f"{self.key(origin)}.part"

    def lock(self, origin: str) -> Path:
        return self.root / "locks" / f"{self.key(origin)}.lock"

    def manual(self, name: str) -> Path:
        return self.root / "manual" / name

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    def read_ref(self, origin: str) -> Optional[dict]:
        try:
            ref = json.loads(self.ref(origin).read_text())
        except (OSError, ValueError):
            return None
        # A ref is a hint, never trusted: it must be well formed and the blob is re-hashed anyway.
        if not isinstance(ref, dict) or ref.get("origin") != origin or not _SHA256.fullmatch(str(ref.get("sha256"))):
            return None
        return ref

    def write_ref(self, origin: str, sha256: str, size: int) -> None:
        data = json.dumps({"origin": origin, "sha256": sha256, "size": size}, indent=1).encode()
        path = self.ref(origin)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def find(self, origin: str, expect: Expect) -> Tuple[Optional[Entry], Optional[str]]:
        """(the verified cached entry, None) or (None, why the cached blob is bad) or (None, None)."""
        sha = expect.sha256
        if sha is None:
            ref = self.read_ref(origin)
            sha = ref["sha256"] if ref and expect.matches(ref["sha256"]) else None
        if sha is None:
            return None, None
        blob = self.blob(sha)
        try:
            # Re-hashed on every use: a blob can rot or be edited after it was verified once.
            got = sha256_file(blob)
            size = blob.stat().st_size
        except OSError:
            return None, None
        if got == sha:
            return Entry(blob, sha, size), None
        return None, f"cached blob {blob} no longer matches: expected sha256 {sha}, got {got}"

    def discard(self, origin: str, expect: Expect) -> None:
        """Delete the blob this origin points at (it failed verification) and the ref to it."""
        sha = expect.sha256 or (self.read_ref(origin) or {}).get("sha256")
        if sha:
            self.blob(sha).unlink(missing_ok=True)
        self.ref(origin).unlink(missing_ok=True)

    def stage(self, source: Path) -> Path:
        """A temporary name in the blob folder for ``source``: a hardlink when the filesystem allows, else a copy."""
        folder = self.blob("0" * 64).parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            _fsync_file(tmp)
        return tmp

    def commit(self, src: Path, sha256: str) -> Path:
        """Move a fully written, verified file into the blob store under its digest."""
        dst = self.blob(sha256)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(src, dst)
        except OSError as e:
            if e.errno != errno.EXDEV:  # partial/ on another filesystem than blobs/ (a symlinked folder)
                raise
            tmp = self.stage(src)
            os.replace(tmp, dst)
        # rename() is a no-op when src and dst are hardlinks of one file; do not leave the temp name behind.
        Path(src).unlink(missing_ok=True)
        _fsync_dir(dst.parent)
        return dst
