"""The published copy of ``manifest.json``: the build record without this machine's file system paths.

The local manifest records where things were found (``weights=FILE``, the mirror file the weights were
read from, the ``zoo validate`` data folder and the images it skipped). Those paths say nothing about the
artifact and may name users, hosts or private folders, so the copy that is published reduces each one
to its file name. Hashes, sizes and everything else are kept as they are: the published manifest still
pins the exact weights and files.

It is a pure function of the local manifest, serialised the way ``zoo.store.write_json`` writes it, so a
manifest without paths publishes byte for byte, and a re-publish of an unchanged build is a no-op.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any, Dict, List, Tuple

# Values that are paths by construction (relative ones too), reduced to their last component.
PATH_KEYS: List[Tuple[str, ...]] = [
    ("weights", "path"),
    ("weights", "mirror"),
    ("accuracy", "data"),
    ("calibration", "folder"),  # the calib_data folder int8 ranges were computed on
]
# Absolute paths anywhere else in a string: /a/b (two components or more: "/" alone or "/b" names no
# one's folder), ~/a, C:\a, and file:// URLs (a local path too). Not the path of any other URL: it
# follows a host name or "://".
_SEGMENT = r"[^\s/'\"`]+"
_ABSOLUTE = re.compile(rf"(?<![\w])file://[^\s'\"`]*"
                       rf"|(?<![\w.:/~\\-])(?:~(?:/{_SEGMENT})+|(?:/{_SEGMENT}){{2,}})/?"
                       r"|(?<![\w])[A-Za-z]:\\(?:[^\s\\'\"`]+\\?)+")


def basename(path: str) -> str:
    parts = [p for p in re.split(r"[/\\]", str(path)) if p and p != "~"]
    return parts[-1] if parts else ""


def scrub_text(text: str) -> str:
    return _ABSOLUTE.sub(lambda m: basename(m.group(0)), text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def public_manifest(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of ``manifest`` with every local path reduced to its file name."""
    out = copy.deepcopy(manifest)
    for keys in PATH_KEYS:
        node = out
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = basename(node[keys[-1]])
    skipped = (out.get("accuracy") or {}).get("result", {}).get("skipped_examples")
    if isinstance(skipped, dict):  # image paths per skip reason
        out["accuracy"]["result"]["skipped_examples"] = {
            reason: [basename(p) for p in paths] if isinstance(paths, list) else paths
            for reason, paths in skipped.items()}
    return _scrub(out)


def manifest_bytes(manifest: Dict[str, Any]) -> bytes:
    """Serialised exactly as ``zoo.store.write_json`` writes a manifest."""
    return (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
