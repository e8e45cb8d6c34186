"""Hugging Face Hub files, through huggingface_hub's own downloader and cache."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import quote

from zoo.fetch._http import DownloadFailed

DEFAULT_FILENAME = "model.safetensors"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def endpoint() -> Optional[str]:
    # huggingface_hub reads HF_ENDPOINT once, at import; reading it per call lets a later setting count.
    value = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return value or None


def resolve_url(repo_id: str, filename: str) -> str:
    """The URL a browser or curl fetches the file from (the Hub redirects it to its CDN)."""
    base = endpoint() or "https://huggingface.co"
    return f"{base}/{repo_id}/resolve/main/{quote(filename)}"


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _quiet_tqdm():
    from huggingface_hub.utils import tqdm

    class _Quiet(tqdm):
        # A subclass, not a stand-in: the Xet downloader drives more of tqdm than update().
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Quiet


def hub_download(repo_id: str, filename: str, hf_cache: Path, offline: bool, show_progress: bool,
                 force: bool = False) -> Tuple[Path, Optional[str]]:
    """(path of the file in huggingface_hub's cache, its LFS sha256 when the Hub told us one)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DownloadFailed("huggingface_hub is not installed (pip install 'resnext-zoo[hub]')") from None
    try:
        path = hf_hub_download(
            repo_id, filename, cache_dir=hf_cache, local_files_only=offline, force_download=force,
            endpoint=endpoint(),
            # None: the Hub's own tqdm bar, which also covers Xet transfers that a rich shim could not drive.
            tqdm_class=None if show_progress else _quiet_tqdm(),
        )
    except Exception as e:  # noqa: BLE001 - it raises a dozen types (HTTP, offline, not found, OSError); all mean "no file"
        raise DownloadFailed(_first_line(e)) from e
    path = Path(path)
    # The blob a snapshot links to is named by its ETag, which for LFS files is the content's sha256.
    etag = path.resolve().name
    return path, etag if _SHA256.fullmatch(etag) else None
