"""The validated registry kept as JSON in the cache, so a command does not validate unchanged files again.

Checking every variant file against the typed schema through OmegaConf takes about 0.6 s, and every
command loads the registry. What came out of a load that passed is written to
``<cache>/registry/<fingerprint>.json``. The fingerprint hashes the package version, the source of the
registry package's modules, and the name and bytes of every file the registry was read from, so any edit
misses the snapshot and the files are validated again. JSON, not pickle: reading a cache file can never
run code, and a snapshot that does not parse or fit the schema is ignored.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Optional

from zoo.errors import UserError
from zoo.registry import loader
from zoo.registry.schema import Document, Source, Variant

FORMAT = 1


def fingerprint(root: Path, files: Iterable[Path]) -> str:
    """A digest of everything a load depends on: the registry package's code (the schema, the loader, the
    architecture counts sizes come from), the package version and the files' bytes."""
    from zoo.build.request import ZOO_VERSION

    h = hashlib.sha256(f"{FORMAT} {ZOO_VERSION}".encode())
    code = sorted(Path(__file__).parent.glob("*.py"))
    for path in (*code, *files):
        h.update(str(path.relative_to(root) if path.is_relative_to(root) else path.name).encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def path_for(digest: str) -> Path:
    from zoo.cache_dir import default_cache_dir

    return default_cache_dir() / "registry" / f"{digest[:32]}.json"


def read(path: Path, root: Path) -> Optional["loader.Registry"]:
    """The registry saved at ``path``; None when there is none or it cannot be used."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return loader.Registry(
            variants={k: _build(Variant, v) for k, v in data["variants"].items()},
            aliases=dict(data["aliases"]),
            sources={k: _build(Source, v) for k, v in data["sources"].items()},
            documents={k: _build(Document, v) for k, v in data["documents"].items()},
            root=root,
            checkpoints={k: loader.Checkpoint(*v) for k, v in data["checkpoints"].items()},
            file_digests=dict(data["file_digests"]),
        )
    except (OSError, ValueError, KeyError, TypeError, UserError):  # absent, or not what this code wrote
        return None


def write(path: Path, registry: "loader.Registry") -> None:
    """Save ``registry`` at ``path``, atomically; a cache that cannot be written is skipped."""
    from zoo.store import write_atomic

    data = {
        "variants": {k: dataclasses.asdict(v) for k, v in registry.variants.items()},
        "aliases": registry.aliases,
        "sources": {k: dataclasses.asdict(v) for k, v in registry.sources.items()},
        "documents": {k: dataclasses.asdict(v) for k, v in registry.documents.items()},
        "checkpoints": {k: list(v) for k, v in registry.checkpoints.items()},
        "file_digests": registry.file_digests,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(data, default=lambda o: o.value if isinstance(o, enum.Enum) else repr(o)))
    except (OSError, UserError):  # a read-only or odd cache folder: the next load validates again
        pass


def _build(kind: Any, value: Any) -> Any:
    """``value`` (as :func:`dataclasses.asdict` wrote it) back as ``kind``: dataclasses, enums, lists."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        (inner,) = [a for a in typing.get_args(kind) if a is not type(None)]
        return _build(inner, value)
    if origin is list:
        (inner,) = typing.get_args(kind)
        return [_build(inner, v) for v in value]
    if dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        return kind(**{f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(kind)})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(kind, type) and not isinstance(value, kind):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return value


_HINTS: Dict[type, Dict[str, Any]] = {}


def _hints(kind: type) -> Dict[str, Any]:
    if kind not in _HINTS:
        _HINTS[kind] = typing.get_type_hints(kind)
    return _HINTS[kind]
