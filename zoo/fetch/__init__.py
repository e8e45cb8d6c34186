"""Download checkpoint files into a verified, content-addressed cache.

``fetch(FetchRequest(url=...))`` or ``fetch(FetchRequest(hf_hub_id=...))`` returns a file whose
sha256 was checked on this very call: against the full digest when the registry has one, else
against the digest prefix torchvision and mmcls put in their file names. Cache layout and write
discipline: see ``zoo.fetch._store``. HTTP resume and retries: ``zoo.fetch._http``. With ``mirror=DIR``
the file is read from a local mirror instead of the network (layout: ``zoo.fetch._mirror``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple, Union

from filelock import FileLock

from zoo.cache_dir import default_cache_dir
from zoo.fetch import _mirror
from zoo.fetch._common import Expect, FetchError, manual_hint, one_line, sha256_file
from zoo.fetch._http import DownloadFailed, RetryPolicy, download
from zoo.fetch._hub import DEFAULT_FILENAME, hub_download, resolve_url
from zoo.fetch._store import Entry, Store

if TYPE_CHECKING:
    from zoo.registry.schema import Variant, Weights

__all__ = ["FetchRequest", "FetchedFile", "FetchError", "RetryPolicy", "default_cache_dir", "sha256_file", "fetch", "origin_of",
           "request_for", "retry_policy", "size_bound", "mirror_path", "write_to_mirror"]

MIB = 1 << 20


@dataclass(frozen=True)
class FetchRequest:
    """One file to fetch: a URL or a Hub file, with whatever digest the registry knows."""

    url: Optional[str] = None            # http(s) URL
    hf_hub_id: Optional[str] = None      # e.g. "timm/resnext50_32x4d.a1h_in1k"
    filename: Optional[str] = None       # file inside the hub repo (default "model.safetensors")
    sha256: Optional[str] = None         # full digest when known
    sha256_prefix: Optional[str] = None  # torchvision/mmcls name files <name>-<first 8+ hex of sha256>.pth
    max_bytes: Optional[int] = None      # the most the file may have (see size_bound); None: the server's figure


@dataclass(frozen=True)
class FetchedFile:
    """A verified file inside the cache."""

    path: Path      # <cache>/blobs/sha256/<hex>
    sha256: str
    size: int
    origin: str     # the URL, or hf://<repo>/<filename>
    cache_hit: bool
    mirror: Optional[Path] = None  # the mirror file it was read from on this call (None: cache or network)


def size_bound(weights: "Weights", variant: Optional["Variant"] = None) -> Optional[int]:
    """The most bytes a registry entry's checkpoint may have: its published file size with 5% + 1 MiB of
    room (published in MB or MiB, rounded), else three times the variant's fp32 weights + 64 MiB (room for
    an EMA copy or optimizer state in the file), else None."""
    published = [p.file_size_mb for p in weights.published if p.file_size_mb]
    if published:
        return math.ceil(max(published) * MIB * 1.05) + MIB
    if variant is not None and variant.size is not None and variant.size.fp32_bytes:
        return 3 * variant.size.fp32_bytes + 64 * MIB
    return None


def request_for(weights: "Weights", variant: Optional["Variant"] = None) -> FetchRequest:
    """How a registry entry's checkpoint is fetched: its Hub file when it has one, else its URL; its size
    bound from the registry (``variant`` adds the estimate from the architecture)."""
    return FetchRequest(url=None if weights.hf_hub_id else weights.url, hf_hub_id=weights.hf_hub_id,
                        filename=weights.filename, sha256=weights.sha256, sha256_prefix=weights.sha256_prefix,
                        max_bytes=size_bound(weights, variant))


def retry_policy(download_timeout: object) -> RetryPolicy:
    """The default policy with the ``download_timeout`` key (seconds for a whole download) checked."""
    if isinstance(download_timeout, bool) or not isinstance(download_timeout, (int, float)) \
            or not 0 < float(download_timeout) < math.inf:
        raise FetchError(f"download_timeout={download_timeout}: expected a number of seconds above 0")
    return RetryPolicy(total_timeout=float(download_timeout))


def mirror_path(req: FetchRequest, mirror: Path) -> Path:
    """Where ``req``'s file lives in a mirror: ``<mirror>/<hf_hub_id>/<filename>`` or ``<mirror>/<host>/<path>``."""
    rel = _mirror.relative_path(req.url, req.hf_hub_id, req.filename or DEFAULT_FILENAME)
    return Path(mirror).expanduser() / rel


def write_to_mirror(got: FetchedFile, req: FetchRequest, mirror_out: Path) -> Tuple[Path, bool]:
    """Copy a fetched file into a mirror's layout (with a ``.sha256`` sidecar); (its path, whether it was written)."""
    dest = mirror_path(req, mirror_out)
    try:
        return dest, _mirror.write_file(got.path, got.sha256, dest)
    except OSError as e:
        raise FetchError(f"cannot write {dest} into the mirror: {one_line(e)}") from None


def _manual_name(text: str) -> str:
    # Flat and filesystem-safe: every timm repo names its file model.safetensors, so the repo goes in.
    return re.sub(r"[^A-Za-z0-9._-]+", "--", text).strip("-") or "download"


def origin_of(req: FetchRequest) -> str:
    """What names the file in the cache: its URL, or ``hf://<repo>/<filename>``."""
    return req.url if req.url else f"hf://{req.hf_hub_id}/{req.filename or DEFAULT_FILENAME}"


def fetch(req: FetchRequest, cache_dir: Optional[Union[Path, str]] = None, offline: bool = False,
          progress: bool = True, retry: Optional[RetryPolicy] = None, mirror: Optional[Path] = None,
          store_endpoint: Optional[str] = None) -> FetchedFile:
    """Return the requested file from the cache, downloading (or, with ``mirror``, reading it from that
    mirror instead of the network) and verifying it first if needed. ``cache_dir`` may be a store URL
    (``s3://...``) that many machines share (zoo.remote.cache)."""
    if bool(req.url) == bool(req.hf_hub_id):
        raise FetchError(f"a fetch needs exactly one of url or hf_hub_id, got url={req.url!r} hf_hub_id={req.hf_hub_id!r}")
    from zoo.remote.location import is_url

    if is_url(cache_dir):
        from zoo.remote.cache import fetch_shared

        return fetch_shared(req, str(cache_dir), store_endpoint, offline, progress, retry, mirror)
    # Checked before the cache: a mistyped mirror= fails the same way whether or not the cache holds the file.
    in_mirror = mirror_path(req, _mirror.check_root(mirror)) if mirror is not None else None
    store = Store(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if req.url:
        if not req.url.startswith(("http://", "https://")):
            raise FetchError(f"{req.url}: only http(s) URLs can be fetched; for a local file pass weights=<path>")
        origin = url = req.url
        manual = _manual_name(url.split("?", 1)[0].rsplit("/", 1)[-1])
    else:
        filename = req.filename or DEFAULT_FILENAME
        origin, url = f"hf://{req.hf_hub_id}/{filename}", resolve_url(req.hf_hub_id, filename)
        manual = _manual_name(f"{req.hf_hub_id}--{filename}")
    expect = Expect.build(req.sha256, req.sha256_prefix, req.url, where=origin)
    # With a known digest the hand-fetched file can go straight where the cache looks for it.
    dest = store.blob(expect.sha256) if expect.sha256 else store.manual(manual)
    hint = manual_hint(url, dest)

    try:
        found, _ = store.find(origin, expect)  # no lock: a hit needs no coordination
        if found:
            return _result(found, origin, True)
        store.lock(origin).parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(store.lock(origin))):
            # Re-check under the lock: another process may have just finished this very download.
            found, stale = store.find(origin, expect)
            if found:
                return _result(found, origin, True)
            note = ""
            if stale:
                store.discard(origin, expect)
                note = f" ({stale}; deleted it)"
            if in_mirror is not None:  # a mirror replaces the network: offline or not, nothing is requested
                return _from_mirror(store, in_mirror, origin, url, expect, note)
            if req.url:
                if offline:
                    raise FetchError(f"offline and {url} is not in the cache{note}; destination {dest}; {hint}")
                return _from_url(store, url, expect, dest, hint, progress, retry or RetryPolicy(), req.max_bytes)
            return _from_hub(store, req.hf_hub_id, filename, origin, expect, dest, hint, offline, progress, note)
    except OSError as e:  # disk full, read-only cache, permissions: still one line, still actionable
        raise FetchError(f"cache error while fetching {url}: {one_line(e)}; destination {dest}; {hint}") from None


def _result(entry: Entry, origin: str, hit: bool) -> FetchedFile:
    return FetchedFile(path=entry.path, sha256=entry.sha256, size=entry.size, origin=origin, cache_hit=hit)


def _from_mirror(store: Store, path: Path, origin: str, url: str, expect: Expect, note: str) -> FetchedFile:
    if not path.is_file():
        raise FetchError(f"{origin} is not in the mirror{note}: expected {path}; put the file there "
                         f"(curl -L --create-dirs -o {path} '{url}') or fetch without mirror=")
    check = expect if (expect.sha256 or expect.prefix) else Expect(sha256=_mirror.sidecar_digest(path))
    try:
        staged = store.stage(path.resolve())  # a hard link where the file systems allow, else a copy
    except OSError as e:
        raise FetchError(f"cannot read {path} from the mirror: {one_line(e)}") from None
    got, size = sha256_file(staged), staged.stat().st_size
    if not check.matches(got):
        staged.unlink(missing_ok=True)  # only our link or copy: the mirror's file is the admin's to replace
        raise FetchError(f"{path} in the mirror failed verification: expected {check.describe()}, got sha256 {got} "
                         f"({size} bytes); the cache was not touched; replace the mirror's copy with {url}")
    blob = store.commit(staged, got)
    store.write_ref(origin, got, size)
    return FetchedFile(path=blob, sha256=got, size=size, origin=origin, cache_hit=False, mirror=path)


def _from_url(store: Store, url: str, expect: Expect, dest: Path, hint: str, progress: bool,
              policy: RetryPolicy, max_bytes: Optional[int]) -> FetchedFile:
    part = store.part(url)
    try:
        download(url, part, policy, progress, max_bytes)
    except DownloadFailed as e:
        raise FetchError(f"could not download {url}: {e}; destination {dest}; {hint}") from None
    got, size = sha256_file(part), part.stat().st_size
    if not expect.matches(got):
        # Never keep it: not as a blob, and not as a partial a later run would resume onto.
        part.unlink(missing_ok=True)
        raise FetchError(f"{url} failed verification: expected {expect.describe()}, got sha256 {got} ({size} bytes); "
                         f"the download was deleted; destination {dest}; {hint}")
    blob = store.commit(part, got)
    store.write_ref(url, got, size)
    return _result(Entry(blob, got, size), url, False)


def _from_hub(store: Store, repo_id: str, filename: str, origin: str, expect: Expect, dest: Path, hint: str,
              offline: bool, progress: bool, note: str) -> FetchedFile:
    where = f"{repo_id} file {filename} from the Hugging Face Hub"
    got = size = None
    check = expect
    # A bad copy in huggingface_hub's cache is deleted and fetched once more, bypassing that cache. After our
    # blob went bad, skip that cache at once: it is likely the same hardlinked file, and a non-LFS file has
    # no Hub digest that would catch it.
    for force in (False, True):
        if (force and offline) or (note and not force and not offline):
            continue
        try:
            path, etag = hub_download(repo_id, filename, store.hf, offline, progress, force=force)
        except DownloadFailed as e:
            state = f"offline and {where} is not in the cache{note}" if offline else f"could not fetch {where}"
            raise FetchError(f"{state}: {e}; destination {dest}; {hint}") from None
        # No registry digest: an LFS file's ETag is its sha256, which beats trusting whatever arrived.
        check = expect if (expect.sha256 or expect.prefix) else Expect(sha256=etag)
        staged = store.stage(path.resolve())
        got, size = sha256_file(staged), staged.stat().st_size
        if check.matches(got):
            blob = store.commit(staged, got)
            store.write_ref(origin, got, size)
            return _result(Entry(blob, got, size), origin, False)
        staged.unlink(missing_ok=True)
        path.resolve().unlink(missing_ok=True)
        path.unlink(missing_ok=True)
    raise FetchError(f"{where} failed verification: expected {check.describe()}, got sha256 {got} ({size} bytes); "
                     f"deleted it{' (offline, not re-fetched)' if offline else ''}; destination {dest}; {hint}")
