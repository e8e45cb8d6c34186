"""Find and remove artifact folders that no current configuration can produce or use.

A folder under ``<out_dir>/<variant>/<source>/<tag>/<target>[-<precision>]/`` is garbage when its
variant, source or tag has left the registry, its target is not a known target, its precision is not
one its target's yaml lists, or it has no readable manifest. Leftovers of ``store.staged``
(``.<name>.staging-*``, ``.<name>.old-*``) are garbage once nothing has written into them for a while:
a fresh one may belong to a build that is still running. A staging folder whose name records its
process on this host is judged by that process instead: garbage as soon as it has ended, kept while it runs.
``plan`` only looks; ``remove`` renames a folder out of the artifact's name before deleting it, so a
crash midway never leaves a half-deleted folder where an artifact is expected. ``<out_dir>/calib/`` (``zoo calib``) and folders that hold no
artifact are someone else's and are never touched.
"""
from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from zoo.results import CALIB_DIR, LEFTOVER, load_manifest, split_folder_name
from zoo.store import CANONICAL_DIR, CANONICAL_RECORD, MANIFEST, staging_owner, staging_owner_gone


@dataclass(frozen=True)
class Known:
    """What the current configuration can build: the registry's checkpoints and each target's precisions."""

    weights: Mapping[str, Mapping[str, Set[str]]]  # variant -> source -> tags
    aliases: Mapping[str, str]  # alias -> variant
    precisions: Mapping[str, Sequence[str]]  # target -> precisions its yaml lists


@dataclass(frozen=True)
class Garbage:
    path: Path
    reason: str
    bytes: int


@dataclass
class Plan:
    remove: List[Garbage] = field(default_factory=list)
    kept: List[Garbage] = field(default_factory=list)  # leftovers too fresh to judge


def plan(root: Path, known: Known, now: float, min_age_s: float) -> Plan:
    """Every folder under ``root`` to remove, with why and how many bytes it frees; nothing is changed."""
    out = Plan()
    for folder, reason in _judge_tree(root, known):
        if reason is None:
            continue
        if LEFTOVER.match(folder.name):
            gone = staging_owner_gone(folder.name)
            if gone is not None:
                pid = staging_owner(folder.name)[1]
                if gone:
                    out.remove.append(Garbage(folder, f"{reason}, its process {pid} on this host has ended",
                                              tree_bytes(folder)))
                else:
                    out.kept.append(Garbage(folder, f"{reason}: its process {pid} on this host is still running",
                                            tree_bytes(folder)))
                continue
            age = now - newest_mtime(folder)
            if age < min_age_s:
                out.kept.append(Garbage(folder, f"{reason}, last written {_age(age)} ago: a running build may own it",
                                        tree_bytes(folder)))
                continue
            reason = f"{reason}, last written {_age(age)} ago"
        out.remove.append(Garbage(folder, reason, tree_bytes(folder)))
    return out


def _judge_tree(root: Path, known: Known) -> Iterator[Tuple[Path, Optional[str]]]:
    """Each folder of the artifact tree, then of the canonical models' tree, with why it is garbage
    (None: keep); no descent into garbage."""
    yield from _walk(root, known, lambda folder: _judge_artifact(folder, known), MANIFEST)
    cache = root / CANONICAL_DIR
    if cache.is_dir() and not cache.is_symlink():
        yield from _walk(cache, known, _judge_canonical, CANONICAL_RECORD)


def _walk(root: Path, known: Known, judge: Callable[[Path], Optional[str]],
          marker: str) -> Iterator[Tuple[Path, Optional[str]]]:
    """``<variant>/<source>/<tag>/<leaf>`` under ``root``; ``marker`` is the file a complete leaf holds."""
    for variant in _dirs(root):
        if variant.name == CALIB_DIR:
            continue
        reason = _leftover(variant) or _unknown_variant(variant.name, known)
        if reason is not None:
            yield variant, _only_artifacts(variant, reason, levels=3, marker=marker)
            continue
        for source in _dirs(variant):
            reason = _leftover(source) or _unknown_source(variant.name, source.name, known)
            if reason is not None:
                yield source, _only_artifacts(source, reason, levels=2, marker=marker)
                continue
            for tag in _dirs(source):
                reason = _leftover(tag) or _unknown_tag(variant.name, source.name, tag.name, known)
                if reason is not None:
                    yield tag, _only_artifacts(tag, reason, levels=1, marker=marker)
                    continue
                for folder in _dirs(tag):
                    yield folder, _leftover(folder) or judge(folder)


def _judge_canonical(folder: Path) -> Optional[str]:
    """A canonical model without its record never finished (its build was killed): nothing reuses it."""
    if (folder / CANONICAL_RECORD).is_file():
        return None
    return f"no {CANONICAL_RECORD}: not a complete canonical model"


def _judge_artifact(folder: Path, known: Known) -> Optional[str]:
    """Why a ``<target>[-<precision>]`` folder is garbage, or None."""
    target, precision = split_folder_name(folder.name)
    if target not in known.precisions:
        return f"target '{target}' is not a known target ({', '.join(sorted(known.precisions))})"
    if precision not in known.precisions[target]:
        return f"precision {precision} is not one of {target}'s ({', '.join(known.precisions[target])})"
    manifest, problem = load_manifest(folder)
    if manifest is None:
        return problem if problem != "no manifest.json" else "no manifest.json: not a complete artifact"
    return None


def _unknown_variant(name: str, known: Known) -> Optional[str]:
    if name in known.weights:
        return None
    if name in known.aliases:
        return f"'{name}' is an alias of {known.aliases[name]}; the store names folders by the variant"
    return f"variant '{name}' is not in the registry"


def _unknown_source(variant: str, source: str, known: Known) -> Optional[str]:
    if source in known.weights[variant]:
        return None
    return f"{variant} has no weights from source '{source}' in the registry"


def _unknown_tag(variant: str, source: str, tag: str, known: Known) -> Optional[str]:
    if tag in known.weights[variant][source]:
        return None
    return f"{variant} from {source} has no tag '{tag}' in the registry"


def _leftover(folder: Path) -> Optional[str]:
    if not LEFTOVER.match(folder.name):
        return None
    return "staging folder of an unfinished build" if ".staging-" in folder.name else "old artifact left by a swap"


def _only_artifacts(folder: Path, reason: Optional[str], levels: int, marker: str = MANIFEST) -> Optional[str]:
    """Keep a stale-looking folder unless it holds artifacts: a stranger's files in out_dir are not ours.

    Artifact-shaped: a ``marker`` file (``manifest.json``, ``canonical.json``) or a build leftover at the depth
    an artifact would have."""
    if reason is None or LEFTOVER.match(folder.name):
        return reason
    level = [folder]
    for _ in range(levels):
        level = [d for f in level for d in _dirs(f)]
    if any((d / marker).is_file() or LEFTOVER.match(d.name) for d in level):
        return reason
    return None


def _dirs(folder: Path) -> List[Path]:
    """Sub-folders the store could have made: hidden ones other than its leftovers are someone else's,
    and symlinks are not followed (a link's target is not ours to judge)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)
            and (not e.name.startswith(".") or LEFTOVER.match(e.name))]


def newest_mtime(folder: Path) -> float:
    """The latest write anywhere in the tree: a build writes deep inside its staging folder."""
    newest = folder.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except OSError:
                pass
    return newest


def tree_bytes(folder: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def remove(folder: Path) -> None:
    """Rename out of the way (atomic), then delete: a crash leaves a ``.old-`` leftover, never a half artifact."""
    trash = folder.with_name(f".{folder.name.lstrip('.')}.old-gc{os.getpid()}-{secrets.token_hex(3)}")
    os.replace(folder, trash)
    shutil.rmtree(trash)


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def current_config() -> Known:
    """The registry's checkpoints and the precisions each known target's yaml lists."""
    from zoo.registry.loader import conf_dir, load_registry, read_yaml
    from zoo.targets import target_names

    reg = load_registry()
    weights: Dict[str, Dict[str, Set[str]]] = {}
    for v in reg.variants.values():
        for w in v.weights:
            weights.setdefault(v.name, {}).setdefault(w.source, set()).add(w.tag)
    precisions: Dict[str, List[str]] = {}
    for name in target_names():
        path = conf_dir() / "target" / f"{name}.yaml"
        options = read_yaml(path) if path.is_file() else {}
        precisions[name] = [str(p) for p in (options or {}).get("precisions", [])]
    return Known(weights=weights, aliases=dict(reg.aliases), precisions=precisions)
