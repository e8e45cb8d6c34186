"""Where this machine keeps its downloads and other caches (a module of its own: cheap to import)."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$ZOO_CACHE`` if set, else the platform's user cache folder / resnext-zoo."""
    env = os.environ.get("ZOO_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("resnext-zoo", appauthor=False)
