"""The artifact store in object storage (``out_dir=s3://bucket/prefix``).

A build runs as on a disk, into a local staging root (``<ZOO_CACHE>/stores/<hash of the URL>``), and is
then uploaded: the old manifest is deleted first, the files go up, and the manifest goes last. A reader
(``results``, the cache-hit check of another node) sees a complete artifact or none: a folder without
a manifest is invisible. One job at a time builds a given artifact, across machines: it holds a lease
object (``zoo.remote.lease``, created with a conditional write); a second job waits for the first's
manifest and takes it as a cache hit. Cache hits are decided from the remote manifest and one listing
of the folder (every file there, at its size); nothing is downloaded.

The commands that read artifacts see the store through a local shadow tree
(:func:`shadow_tree`): the manifests as they are, every other object as an empty sparse file of its
size and time, so ``results``, ``report`` and ``gc``'s plan run unchanged; ``gc apply=true`` deletes the
folders it chose in the store. ``validate``, ``bench`` and ``publish`` download the artifact they need
(:func:`pull`).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from zoo.remote.lease import Lease
from zoo.remote.location import Location, open_location

MANIFEST = "manifest.json"
LEASES = ".leases"
POLL_S = 1.0


def staging_root(url: str) -> Path:
    """The local folder where this machine builds (and keeps copies of) the store's artifacts."""
    from zoo.cache_dir import store_folder

    return store_folder(url)


def location(req: Any) -> Location:
    return open_location(req.store_url, "out_dir", req.store_endpoint)


def relative(req: Any) -> str:
    from zoo.build.request import artifact_folder_name

    return "/".join([req.variant.name, req.weights.source, req.weights.tag,
                     artifact_folder_name(req.target, req.precision)])


def remote_hit(loc: Location, rel: str, key: str) -> Optional[Dict[str, Any]]:
    """The store's manifest for ``rel`` when it is a complete, passed build with this key (the local
    cache-hit rule, ``zoo.store.complete_build``, over one listing of the folder); no download."""
    from zoo.store import complete_build

    m = loc.read_json(f"{rel}/{MANIFEST}")
    if not m or m.get("key") != key:
        return None
    try:
        sizes = {p[len(loc.path(rel)) + 1:]: int(d.get("size") or 0)
                 for p, d in loc.fs.find(loc.path(rel), detail=True).items()}
    except Exception as e:  # noqa: BLE001
        raise loc.error(e, f"listing {rel}") from None
    return complete_build(m, key, sizes.get)


def is_remote_hit(req: Any) -> bool:
    from zoo.build.request import request_key

    return not req.force and remote_hit(location(req), relative(req), request_key(req)) is not None


def upload(loc: Location, folder: Path, rel: str, progress: bool = True) -> None:
    """``folder``'s files to ``rel``: the old manifest off first, the manifest last, leftovers removed."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != MANIFEST)
    loc.remove(f"{rel}/{MANIFEST}")
    total = sum(p.stat().st_size for p in files)
    if progress:
        print(f"uploading {len(files)} file(s), {total / 2**20:.1f} MiB, to {loc.url_of(rel)}", file=sys.stderr)
    names = set()
    for p in files:
        name = p.relative_to(folder).as_posix()
        names.add(name)
        loc.put(p, f"{rel}/{name}")
    for old in loc.files(rel):
        name = old[len(rel) + 1:]
        if name not in names and name != MANIFEST:
            loc.remove(old)
    loc.put(folder / MANIFEST, f"{rel}/{MANIFEST}")


def convert(req: Any, build: Any) -> Any:
    """``build(local_req)`` (the local pipeline) for a request whose ``out_dir`` is a store URL, with
    the store's cache hit, lease and upload around it (see the module doc)."""
    from zoo.build.request import Result, request_key

    loc, rel, key = location(req), relative(req), request_key(req)
    local = replace(req, out_root=staging_root(req.store_url), store_url=None)
    where = loc.url_of(rel)
    if not req.force:
        hit = remote_hit(loc, rel, key)
        if hit is not None:
            return Result(hit, _local_folder(local, rel), True, where)
    lease = Lease(loc, f"{LEASES}/{rel.replace('/', '--')}.json", req.lease_s, f"build {rel}")
    said = False
    while not lease.acquire():
        held = lease.holder() or {}
        if not said and req.progress:
            print(f"waiting: {held.get('host', '?')} (pid {held.get('pid', '?')}) is building {where}", file=sys.stderr)
            said = True
        time.sleep(POLL_S)
        hit = remote_hit(loc, rel, key)
        if hit is not None:
            return Result(hit, _local_folder(local, rel), True, where)  # the winner's result
    try:
        if not req.force:  # the last holder may have finished between the check and the lease
            hit = remote_hit(loc, rel, key)
            if hit is not None:
                return Result(hit, _local_folder(local, rel), True, where)
        try:
            result = build(local)
        except Exception as e:
            failed = getattr(e, "folder", None)  # a failed build's manifest is a record too
            if failed is not None and (Path(failed) / MANIFEST).is_file():
                upload(loc, Path(failed), rel, req.progress)
            raise
        upload(loc, result.folder, rel, req.progress)
        return Result(result.manifest, result.folder, result.cache_hit, where)
    finally:
        lease.release()


def _local_folder(local_req: Any, rel: str) -> Path:
    return Path(local_req.out_root) / rel


def pull(req: Any) -> None:
    """The store's copy of ``req``'s artifact into the local staging root (replacing an older one), for
    the commands that open it: validate, publish."""
    pull_folder(location(req), relative(req), Path(req.out_root))


def pull_folder(loc: Location, rel: str, local_root: Path) -> None:
    """``rel`` from the store into ``local_root / rel``, unless the copy there is the same build; the
    files land in a staging folder first, and are swapped in whole."""
    m = loc.read_json(f"{rel}/{MANIFEST}")
    folder = local_root / rel
    if m is None:
        return  # nothing there: the command says what to build, as it does for a local out_dir
    local = _read_local(folder / MANIFEST)
    if local is not None and local.get("key") == m.get("key") and local.get("artifact") == m.get("artifact"):
        if local != m:
            folder.joinpath(MANIFEST).write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
        return
    stage = Path(tempfile.mkdtemp(prefix=".pull-", dir=_parent(folder)))
    try:
        for name in [f["name"] for f in m.get("artifact", {}).get("files", [])] + [MANIFEST]:
            loc.get(f"{rel}/{name}", stage / name)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class LocalCopies:
    """Local copies of the store's artifacts that ``find(tree)`` picks (it is given a shadow of the store
    and returns artifact folders in it), for a command that runs them here (bench); :meth:`push_manifests`
    writes back what the command added to their manifests."""

    def __init__(self, url: str, endpoint: Optional[str], find: Callable[[Path], List[Path]]) -> None:
        self.loc = open_location(url, "out_dir", endpoint)
        self.root = staging_root(url)
        shadow = shadow_tree(url, endpoint)
        self.rels = [folder.relative_to(shadow).as_posix() for folder in find(shadow)]
        for rel in self.rels:
            pull_folder(self.loc, rel, self.root)
        self.folders = [self.root / rel for rel in self.rels]

    def push_manifests(self) -> None:
        for rel in self.rels:
            push_manifest(self.loc, self.root, rel)


def push_manifest(loc: Location, local_root: Path, rel: str) -> None:
    """Write back a manifest a command updated here (validate's accuracy, bench's figures), if the store
    still holds that same build."""
    local = _read_local(local_root / rel / MANIFEST)
    there = loc.read_json(f"{rel}/{MANIFEST}")
    if local is None or there is None or there.get("key") != local.get("key") or local == there:
        return
    loc.write(f"{rel}/{MANIFEST}", (json.dumps(local, indent=2, sort_keys=True) + "\n").encode())


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


def _read_local(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def shadow_tree(url: str, endpoint: Optional[str]) -> Path:
    """A local tree that mirrors the store for reading: manifests downloaded, other objects as empty
    sparse files of their size and modification time (removed when the process ends)."""
    loc = open_location(url, "out_dir", endpoint)
    root = Path(tempfile.mkdtemp(prefix="zoo-store-"))
    atexit.register(shutil.rmtree, root, True)
    try:
        listing = loc.fs.find(loc.root, detail=True)
    except Exception as e:  # noqa: BLE001
        raise loc.error(e, "listing the store") from None
    prefix = loc.root.rstrip("/") + "/"
    for path, info in listing.items():
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if rel.startswith(f"{LEASES}/"):
            continue
        local = root / rel
        local.parent.mkdir(parents=True, exist_ok=True)
        if local.name == MANIFEST:
            loc.get(rel, local)
        else:
            with open(local, "wb") as f:
                f.truncate(int(info.get("size") or 0))
        modified = info.get("LastModified") or info.get("mtime")
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or time.time())
        os.utime(local, (stamp, stamp))
    return root


def remove_folder(url: str, endpoint: Optional[str], rel: str) -> None:
    """Delete one folder of the store (gc): the manifest first, so a reader never sees half of it."""
    loc = open_location(url, "out_dir", endpoint)
    loc.remove(f"{rel}/{MANIFEST}")
    loc.remove(rel, recursive=True)
