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
import re
import shutil
import socket
import stat
import sys
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, IO, Iterable, Iterator, Optional, Tuple, Union

from zoo.errors import UserError

MANIFEST = "manifest.json"
# The canonical ONNX models every target starts from (zoo.build.canonical): <out_dir>/.canonical/..., each
# folder complete once its record is written.
CANONICAL_DIR = ".canonical"
CANONICAL_RECORD = "canonical.json"

_PLAIN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def plain_name(value: str, what: str) -> str:
    """``value`` unchanged when it can be one path part; else a UserError naming ``what``.

    Registry names (variant, source, tag, target, precision) become folder names, and an override can
    set any of them: a separator or '..' would put the artifact outside out_dir."""
    text = str(value)
    if not _PLAIN_NAME.fullmatch(text) or text in (".", ".."):
        raise UserError(f"{what} {text!r} is not a plain name: it names a folder, so use only letters, digits, "
                        f"'.', '_' and '-' (not '.' or '..' alone)")
    return text


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "a special file"


def check_write_target(path: Path, folder: bool = False) -> None:
    """Refuse to replace ``path`` unless it is new or already what we write (a regular file, or a real
    folder when ``folder``): a rename over a FIFO, a device or a symlink would swap out what the name
    stood for (as root, /dev/null itself). Symlinks are refused even to a regular file: replacing one
    would cut the link, and writing through it would write where the link points, outside our tree."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return  # a new path
    except OSError:
        return  # a parent that is a file, no permission ...: the write itself reports it
    expected = "a folder" if folder else "a regular file"
    note = ""
    if stat.S_ISLNK(st.st_mode):
        note = " (links are not followed)"
        try:
            kind = f"a symbolic link to {_kind(os.stat(path).st_mode)}"
        except OSError:
            kind = "a symbolic link that leads nowhere (dangling or a loop)"
    elif (stat.S_ISDIR if folder else stat.S_ISREG)(st.st_mode):
        return
    else:
        kind = _kind(st.st_mode)
    raise UserError(f"{path} is {kind}: expected {expected} or a new path{note}; choose another path")


@contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A binary file that replaces ``path`` when the block ends: written to a temporary file beside it,
    flushed to disk, then renamed, so a reader sees the old file or the new one, whole. ``path`` must be a
    regular file or new (:func:`check_write_target`); every file the project writes goes through here."""
    path = Path(path)
    check_write_target(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would make it: mkstemp's 0600 would hide it from others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: Union[str, bytes]) -> None:
    """``data`` (text is UTF-8) into ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


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
    """``root/<variant>/<source>/<tag>/<target>[-<precision>]``; each part must be a plain name."""
    parts = (("variant", variant), ("source", source), ("tag", tag), ("target folder", target))
    return Path(root).joinpath(*(plain_name(value, what) for what, value in parts))


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
    """The manifest of a complete build with this key that passed its checks (a kit too), whose files are all present."""
    def size(name: str) -> Optional[int]:
        p = folder / name
        return p.stat().st_size if p.is_file() else None

    return complete_build(read_manifest(folder), key, size)


def complete_build(m: Optional[Dict[str, Any]], key: str,
                   size_of: Callable[[str], Optional[int]]) -> Optional[Dict[str, Any]]:
    """``m`` when it records a build with this key that passed its checks (a kit too) and every file it
    lists is there at its size (``size_of(name)``, None for a missing file): the cache-hit rule, for a
    folder here or one in object storage."""
    from zoo.status import checks_passed

    if not m or m.get("key") != key or not checks_passed(str(m.get("status"))):
        return None
    if any(size_of(f["name"]) != f["size"] for f in m.get("artifact", {}).get("files", [])):
        return None
    return m


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


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


# The owner of a staging folder is in its name, ``.<name>.staging-<host id>-<pid>-<random>``: a file inside
# would become part of what is staged (builds list the folder's files into the manifest).
_STAGING_OWNER = re.compile(r"\.staging-([0-9a-f]{12})-(\d+)-[^/]*$")


@lru_cache(maxsize=1)
def host_id() -> str:
    """This host and PID namespace, hashed to 12 hex digits: a container that shares the host's name
    (host networking) has its own PIDs, so its builds must not be judged by this side's process table."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return hashlib.sha256(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:12]


def staging_owner(name: str) -> Optional[Tuple[str, int]]:
    """(host id, pid) of the process that made staging folder ``name``; None for a name without them."""
    m = _STAGING_OWNER.search(name)
    return (m.group(1), int(m.group(2))) if m else None


def staging_owner_gone(name: str) -> Optional[bool]:
    """Whether the process that made staging folder ``name`` has ended: True or False when it ran here,
    None when that cannot be told (another host, a name without an owner, no POSIX process table)."""
    owner = staging_owner(name)
    if owner is None or owner[0] != host_id() or os.name != "posix":
        return None  # os.kill(pid, 0) is only a probe on POSIX
    if owner[1] == os.getpid():
        return False
    try:
        os.kill(owner[1], 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def _remove_orphaned_stages(folder: Path) -> None:
    """Delete earlier staging folders of ``folder`` whose process is gone from this host (a kill -9)."""
    prefix = f".{folder.name}.staging-"
    try:
        entries = [e for e in os.scandir(folder.parent) if e.name.startswith(prefix)]
    except OSError:
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False) and staging_owner_gone(e.name):
            shutil.rmtree(e.path, ignore_errors=True)


@contextmanager
def staged(folder: Path, destination: Optional[Callable[[Path], Path]] = None) -> Iterator[Path]:
    """Yield a staging folder; on success swap it in for ``folder`` (or for ``destination(stage)``, a
    sibling the caller picks once the stage is complete), on failure delete it. Its name records this
    process and host, so a later ``staged`` of the same folder (or ``zoo gc``) removes it if this process
    dies before either."""
    check_write_target(folder, folder=True)  # before any work: the swap would move a link or a file aside
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_stages(folder)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.staging-{host_id()}-{os.getpid()}-", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the artifact folder is as readable as any other
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if destination is not None:
        folder = destination(stage)
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(stage, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
