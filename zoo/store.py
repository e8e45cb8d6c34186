"""The artifact store: one folder per (variant, source, tag, target), written atomically.

``artifacts/<variant>/<source>/<tag>/<target>/`` holds the artifact files and ``manifest.json``.
A build is staged in a sibling temporary folder and swapped in with renames, so a failure or a
kill leaves either the previous complete artifact or nothing, never a half-written one.
The artifact key hashes everything the output depends on; a re-run whose key matches a passed
manifest is a cache hit.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional

MANIFEST = "manifest.json"


def link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the file system allows, else a copy: for files nobody writes through later
    (a build's work copy, which is deleted after it; a published file, replaced by unlink first)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def tool_versions(packages: Iterable[str]) -> Dict[str, str]:
    """Installed versions, read from package metadata (no import: a cache hit must not load torch)."""
    out = {}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def artifact_key(parts: Dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def artifact_dir(root: Path, variant: str, source: str, tag: str, target: str) -> Path:
    return Path(root) / variant / source / tag / target


def read_manifest(folder: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_hit(folder: Path, key: str) -> Optional[Dict[str, Any]]:
    """The manifest of a complete, passed build with this key whose files are all present."""
    m = read_manifest(folder)
    if not m or m.get("key") != key or m.get("status") != "passed":
        return None
    for f in m.get("artifact", {}).get("files", []):
        p = folder / f["name"]
        if not p.is_file() or p.stat().st_size != f["size"]:
            return None
    return m


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def artifact_lock(folder: Path, announce: bool = True) -> Iterator[None]:
    """Hold the one build of ``folder`` on this file system (``.<name>.lock`` beside it); a second
    job asking for the same artifact waits here, saying so once."""
    from filelock import FileLock, Timeout

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder.parent / f".{folder.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if announce:
            print(f"[zoo] waiting for another build of {folder} ...", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


@contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """Yield a staging folder; on success swap it in for ``folder``, on failure delete it."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the artifact folder is as readable as any other
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(stage, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
