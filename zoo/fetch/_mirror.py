"""A local mirror of the files the zoo downloads: a folder that an air-gapped site fills once.

    <mirror>/<hf_hub_id>/<filename>     a Hugging Face Hub file: the path ``hub=local`` gives a repo's file
    <mirror>/<url host>/<url path>      a URL: <mirror>/download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth
    <file>.sha256                       optional, ``sha256sum`` format: the digest the file was verified
                                        against when ``zoo fetch mirror_out=`` wrote it

A mirror file is the same bytes the Hub or the URL serves, so it is verified like a download (registry
sha256, else its prefix) and enters the cache under the same origin. Where the registry has no digest,
the sidecar stands in for the Hub's LFS digest; with neither, the file is trusted on first use, exactly
as a download of a URL without a digest is.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Optional
from urllib.parse import unquote, urlsplit

from zoo.fetch._common import FetchError, sha256_file
from zoo.store import check_write_target

SIDECAR = ".sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def check_root(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FetchError(f"mirror={root}: no such folder; give the mirror's root folder (see `## Publishing` in "
                         "the README for its layout) or drop mirror=")
    return root


def relative_path(url: Optional[str], hf_hub_id: Optional[str], filename: str) -> PurePosixPath:
    """Where a file lives inside a mirror, from what a download would request."""
    if hf_hub_id:
        rel, where = f"{hf_hub_id}/{filename}", f"hf://{hf_hub_id}/{filename}"
    else:
        parts = urlsplit(url or "")
        if not parts.hostname:
            raise FetchError(f"{url}: a mirror path needs an http(s) URL with a host")
        rel, where = f"{parts.hostname}/{unquote(parts.path)}", str(url)
    segments = [s for s in rel.split("/") if s]
    # The path comes from the registry, but it must still stay inside the mirror.
    if not segments or any(s in (".", "..") for s in segments) or rel.endswith("/"):
        raise FetchError(f"{where}: no file path inside a mirror can be derived from it")
    return PurePosixPath(*segments)


def sidecar_digest(path: Path) -> Optional[str]:
    """The digest in ``<file>.sha256`` (``sha256sum`` format), if the mirror has one for this file."""
    side = path.with_name(path.name + SIDECAR)
    try:
        text = side.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise FetchError(f"cannot read {side}: {e}") from None
    digest = text[0].lower() if text else ""
    if not _SHA256.fullmatch(digest):
        raise FetchError(f"{side} is not a sha256sum line (<64 hex digits>  <file name>); fix or delete it")
    return digest


def _write_atomically(path: Path, write) -> None:
    check_write_target(path)  # a FIFO, device or link at a mirror path is refused, not replaced
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_file(blob: Path, sha256: str, dest: Path) -> bool:
    """Copy a verified cache blob to its mirror path, with its sidecar; False when it was already there.

    A copy, never a link: a mirror usually sits on a shared or removable file system, and its files must
    not change when the cache is cleaned."""
    present = dest.is_file() and sha256_file(dest) == sha256
    if not present:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(dest, lambda tmp: shutil.copyfile(blob, tmp))
    side = dest.with_name(dest.name + SIDECAR)
    line = f"{sha256}  {dest.name}\n"
    if not (side.is_file() and side.read_text() == line):
        _write_atomically(side, lambda tmp: tmp.write_text(line))
    return not present
