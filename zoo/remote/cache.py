"""The download cache shared in object storage (``cache_dir=s3://...``), content-addressed by sha256.

In the store: ``blobs/sha256/<hex>`` and ``refs/<sha256 of the origin>.json`` (origin, sha256, size),
the layout of the local cache (``zoo.fetch._store``). Each machine keeps its local cache in front of it
(under ``ZOO_CACHE``). A file that comes from the store is hashed after the download and before use,
against the ref and the registry's digest; a bad one is deleted here and its ref in the store dropped,
so it is fetched from the origin again, never used. On a miss one job, the holder of a lease object
(``zoo.remote.lease``), downloads from the origin into its local cache, where it is verified, then
uploads the blob and, last, the ref; every other job waits for the ref and takes the blob from the
store: one download from the origin however many machines ask.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

from zoo.cache_dir import store_folder
from zoo.remote.lease import Lease
from zoo.remote.location import Location, open_location

POLL_S = 0.5


def fetch_shared(req: Any, url: str, endpoint: Optional[str], offline: bool, progress: bool, retry: Any,
                 mirror: Optional[Path], lease_s: float = 900.0) -> Any:
    """``zoo.fetch.fetch`` with a store URL as the cache (see the module doc)."""
    from zoo.fetch import fetch, origin_of
    from zoo.fetch._store import Store

    loc = open_location(url, "cache_dir", endpoint)
    here = store_folder(url)  # this machine's cache in front of the shared one
    origin = origin_of(req)
    key = Store.key(origin)
    local = _local_hit(req, here)
    if local is not None:
        return local
    got = _from_store(req, loc, here, origin, key)
    if got is not None:
        return got
    lease = Lease(loc, f"locks/{key}.json", lease_s, f"download {origin}")
    said = False
    while not lease.acquire():
        if not said and progress:
            held = lease.holder() or {}
            print(f"waiting: {held.get('host', '?')} (pid {held.get('pid', '?')}) is downloading {origin} into "
                  f"{url}", file=sys.stderr)
            said = True
        time.sleep(POLL_S)
        got = _from_store(req, loc, here, origin, key)
        if got is not None:
            return got
    try:
        got = _from_store(req, loc, here, origin, key)  # finished between our look and the lease
        if got is not None:
            return got
        got = fetch(req, cache_dir=here, offline=offline, progress=progress, retry=retry, mirror=mirror)
        # verified by fetch; the blob first, the ref that points at it last
        _put_once(loc, got.path, f"blobs/sha256/{got.sha256}")
        loc.write(f"refs/{key}.json", json.dumps({"origin": origin, "sha256": got.sha256, "size": got.size}).encode())
        return got
    finally:
        lease.release()


def _put_once(loc: Location, path: Path, rel: str) -> None:
    """The blob, unless the store has it (same name, same digest: the same bytes)."""
    try:
        if loc.fs.exists(loc.path(rel)):
            return
    except Exception as e:  # noqa: BLE001
        raise loc.error(e, f"looking up {rel}") from None
    loc.put(path, rel)


def _local_hit(req: Any, here: Path) -> Any:
    from zoo.fetch import FetchError, fetch

    try:
        return fetch(req, cache_dir=here, offline=True, progress=False)
    except FetchError:
        return None


def _from_store(req: Any, loc: Location, here: Path, origin: str, key: str) -> Any:
    """The store's blob for ``origin`` in the local cache, verified; None when the store has none (or a bad one)."""
    from zoo.fetch import FetchedFile
    from zoo.fetch._common import Expect, sha256_file
    from zoo.fetch._store import Store

    ref = loc.read_json(f"refs/{key}.json")
    if not ref or ref.get("origin") != origin or not isinstance(ref.get("sha256"), str):
        return None
    store = Store(here)
    part = store.part(origin)
    part.parent.mkdir(parents=True, exist_ok=True)
    loc.get(f"blobs/sha256/{ref['sha256']}", part)
    got, size = sha256_file(part), part.stat().st_size
    expect = Expect.build(req.sha256, req.sha256_prefix, req.url, where=origin)
    if got != ref["sha256"] or not expect.matches(got):
        part.unlink(missing_ok=True)  # never used, never kept; the store's bad copy is replaced by the next download
        print(f"warning: {loc.url_of('blobs/sha256/' + ref['sha256'])} failed verification (got sha256 {got}); "
              "fetching it from its origin again", file=sys.stderr)
        loc.remove(f"refs/{key}.json")
        loc.remove(f"blobs/sha256/{ref['sha256']}")
        return None
    blob = store.commit(part, got)
    store.write_ref(origin, got, size)
    return FetchedFile(path=blob, sha256=got, size=size, origin=origin, cache_hit=True)
