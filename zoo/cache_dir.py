"""Where this machine keeps its downloads and other caches (a module of its own: cheap to import)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$ZOO_CACHE`` if set, else the platform's user cache folder / resnext-zoo."""
    env = os.environ.get("ZOO_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("resnext-zoo", appauthor=False)


def store_folder(url: str) -> Path:
    """This machine's folder for a store URL (s3://...): where it builds and keeps copies of the store's
    artifacts (an out_dir), or keeps the files of a shared download cache (a cache_dir)."""
    return default_cache_dir() / "stores" / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
