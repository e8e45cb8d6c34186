"""Every built artifact under an output folder, one row each, from the manifests alone.

A row per ``<variant>/<source>/<tag>/<target>[-<precision>]/manifest.json``: the build's status and
why, measured against published params and MACs, the parity numbers that decided the pass, accuracy
where ``zoo validate`` measured it, the artifact's size and the time of each stage. Nothing here loads
a model or a framework: a results table over hundreds of artifacts costs a JSON read per artifact.
Folders that are not complete artifacts (staging folders of a running or crashed build, a manifest that
does not parse or lacks a field) are skipped and reported, never fatal.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from zoo.bench.summary import columns as speed_here
from zoo.errors import UserError
from zoo.store import MANIFEST

# ``zoo calib`` writes its sets under <out_dir>/calib/: not artifacts.
CALIB_DIR = "calib"
# What ``store.staged`` leaves behind when a build runs or dies: ``.<name>.staging-*`` / ``.<name>.old-*``.
LEFTOVER = re.compile(r"^\..+\.(staging|old)-")
# Display order of the pipeline's stages; a stage not named here is shown after these.
STAGE_ORDER = ("import", "fetch", "init", "build", "reference", "export", "canonicalise", "validate",
               "canonical-link", "prepare", "compile", "target-load", "target-parity")
# Where a manifest's row comes from; a manifest without one of these is incomplete.
IDENTITY = ("variant", "source", "tag", "target", "precision")

TABLE_COLUMNS = [
    "variant", "source", "tag", "target", "precision", "status", "reason", "params", "params_published",
    "gmacs", "gmacs_published", "source_cosine", "source_max_abs", "target_cosine", "target_max_abs",
    "top1", "top5", "top1_published", "img_s", "bench_batch", "p50_ms", "size_mib", "time_s", "stages", "calibration",
]

PublishedTop1 = Mapping[Tuple[str, str, str], Tuple[float, str]]


@dataclass
class Gathered:
    rows: List[Dict[str, Any]] = field(default_factory=list)
    skipped: List[Dict[str, str]] = field(default_factory=list)  # {"path", "reason"}


def artifact_folders(root: Path) -> Iterator[Tuple[Path, Optional[str]]]:
    """Each folder at artifact depth, with why it is not an artifact (None: it should be one).

    Walks exactly four levels (no recursion into artifact files); hidden folders other than a
    build's leftovers are someone else's and are not reported."""
    for variant in _entries(root):
        if variant.name == CALIB_DIR or variant.name.startswith("."):
            continue
        for source in _entries(variant):
            if source.name.startswith("."):
                continue
            for tag in _entries(source):
                if tag.name.startswith("."):
                    continue
                for folder in _entries(tag):
                    if not folder.name.startswith("."):
                        yield folder, None
                    elif LEFTOVER.match(folder.name):
                        yield folder, "staging folder (a build in progress or one that died)"


def _entries(folder: Path) -> List[Path]:
    """Sub-folders, sorted; symlinks are not followed and an unreadable folder has none."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]


def split_folder_name(name: str) -> Tuple[str, str]:
    """``onnx`` -> (onnx, fp32); ``onnx-int8`` -> (onnx, int8): the inverse of the store's folder name."""
    target, sep, precision = name.rpartition("-")
    return (target, precision) if sep else (name, "fp32")


def folder_identity(folder: Path) -> Tuple[str, ...]:
    """(variant, source, tag, target, precision) as the store's path spells them."""
    return (folder.parent.parent.parent.name, folder.parent.parent.name, folder.parent.name,
            *split_folder_name(folder.name))


def load_manifest(folder: Path) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The manifest, or why it cannot be used (including a manifest copied from another artifact)."""
    path = folder / MANIFEST
    try:
        m = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "no manifest.json"
    except (OSError, ValueError) as e:
        return None, f"unreadable manifest.json ({type(e).__name__})"
    if not isinstance(m, dict):
        return None, "manifest.json is not a JSON object"
    missing = [k for k in (*IDENTITY, "status", "validation", "artifact") if k not in m]
    if missing:
        return None, f"incomplete manifest.json (no {', '.join(missing)})"
    says = tuple(str(m[k]) for k in IDENTITY)
    if says != folder_identity(folder):
        return None, f"manifest of another artifact ({'/'.join(says)})"
    return m, None


def matches(variant: str, source: str, pattern: Optional[str], want_source: Optional[str],
            aliases: Mapping[str, Sequence[str]]) -> bool:
    """``filter`` is a shell wildcard over the variant's name and aliases, as in ``zoo list``."""
    if want_source is not None and source != want_source:
        return False
    if not pattern:
        return True
    return any(fnmatch.fnmatchcase(n, pattern) for n in (variant, *aliases.get(variant, ())))


def gather(root: Path, published_top1: PublishedTop1, pattern: Optional[str] = None,
           source: Optional[str] = None, aliases: Optional[Mapping[str, Sequence[str]]] = None) -> Gathered:
    """A row per artifact under ``root`` (sorted by identity) and each folder skipped, with why."""
    out = Gathered()
    for folder, problem in artifact_folders(root):
        rel = folder.relative_to(root)
        if not matches(rel.parts[0], rel.parts[1], pattern, source, aliases or {}):
            continue
        manifest = None
        if problem is None:
            manifest, problem = load_manifest(folder)
        if manifest is not None:
            try:
                out.rows.append(manifest_row(manifest, folder, published_top1))
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                problem = f"incomplete manifest.json ({type(e).__name__}: {e})"
        if problem is not None:
            out.skipped.append({"path": str(folder), "reason": problem})
    out.rows.sort(key=lambda r: tuple(r[k] for k in IDENTITY))
    return out


def manifest_row(m: Dict[str, Any], folder: Path, published_top1: PublishedTop1) -> Dict[str, Any]:
    """One artifact's row; numbers are the manifest's own (no rounding), display is left to the renderer."""
    v, a = m["validation"], m["artifact"]
    params_pub = _first(v.get("params", {}).get("published"))
    macs_pub = _first(v.get("macs", {}).get("published"))
    src = worst_parity(v.get("parity", {}).get("sets"))
    tgt_parity = v.get("target", {}).get("parity", {})
    tgt = worst_parity(tgt_parity.get("sets"))
    acc = (m.get("accuracy") or {}).get("result") or {}
    top1_pub, top1_doc = published_top1.get((m["variant"], m["source"], m["tag"]), (None, None))
    if top1_pub is None:  # a checkpoint the registry no longer has: what validate recorded, if anything
        top1_pub = (m.get("accuracy") or {}).get("published_top1")
        top1_doc = ((m.get("accuracy") or {}).get("published_in") or {}).get("doc")
    timings = {k: float(s) for k, s in (m.get("timings_s") or {}).items()}
    size = sum(int(f["size"]) for f in a.get("files", []))
    return {
        **{k: m[k] for k in IDENTITY},
        "status": m["status"],
        "reason": reason(m),
        "build": "compiled" if a.get("compiled") else "kit only",
        "compiler": a.get("compiler"),
        "weights": (m.get("weights") or {}).get("mode"),
        "params": v.get("params", {}).get("graph"),
        "params_published": _whole(params_pub.get("value")),
        "params_published_doc": params_pub.get("doc"),
        "macs": v.get("macs", {}).get("graph"),
        "gmacs": _g(v.get("macs", {}).get("graph")),
        "gmacs_published": macs_pub.get("value_g"),
        "gmacs_published_convention": macs_pub.get("convention"),
        "gmacs_published_doc": macs_pub.get("doc"),
        "source_cosine": src[0],
        "source_max_abs": src[1],
        "target_cosine": tgt[0],
        "target_max_abs": tgt[1],
        "target_parity": "skipped: " + str(tgt_parity["skipped"]) if "skipped" in tgt_parity else None,
        "calibration": m.get("calibration"),  # the whole record (int8), None otherwise; shown by calibration_line
        "top1": acc.get("top1"),
        "top5": acc.get("top5"),
        "images": acc.get("n_evaluated"),
        "top1_published": top1_pub,
        "top1_published_doc": top1_doc,
        **speed_here(m),  # zoo bench on this machine
        "size_bytes": size,
        "size_mib": round(size / 2**20, 1),
        "time_s": round(sum(timings.values()), 1),
        "stages": stages_line(timings),
        "timings_s": timings,
        "peak_rss_mib": _peak(m.get("peak_rss_mb")),
        "folder": str(folder),
    }


def _peak(memory: Optional[Mapping[str, Mapping[str, float]]]) -> Optional[float]:
    """The build's peak: the largest stage, counting a stage's child process with it (older manifests: None)."""
    if not memory:
        return None
    process, child = memory.get("process", {}), memory.get("child", {})
    return round(max(process.get(s, 0.0) + child.get(s, 0.0) for s in set(process) | set(child)), 1)


def reason(m: Dict[str, Any]) -> str:
    """Why a build failed (each failed check named), or how a passed one stands (kit only, compiled)."""
    v, a = m["validation"], m["artifact"]
    failed = [k for k in ("params", "macs", "shapes", "parity") if v.get(k, {}).get("passed") is False]
    tgt = v.get("target", {})
    failed += [f"target check '{c['name']}'" for c in tgt.get("checks", []) if not c.get("passed")]
    failed += [f"target parity {name}" for name, p in (tgt.get("parity", {}).get("sets") or {}).items()
               if not p.get("passed") and p.get("gated", True)]
    if not failed and tgt.get("passed") is False:
        failed.append("target")
    verdict = ((m.get("accuracy") or {}).get("verdict") or {})
    if verdict.get("passed") is False:
        failed.append("accuracy")
    if (m.get("golden") or {}).get("passed") is False:
        failed.append("golden")
    parts = [f"failed: {', '.join(failed)}"] if failed else []
    if not a.get("compiled"):
        parts.append(f"kit only ({a.get('compiler')})")
    elif a.get("commands"):  # a vendor kit whose compiler ran here
        parts.append(f"compiled ({a.get('compiler')})")
    return "; ".join(parts)


def calibration_line(row: Mapping[str, Any]) -> Optional[str]:
    """The row's calibration as every view shows it (``zoo.calibration.describe``); None when there is
    nothing to say (not int8). An int8 manifest written before calibration was recorded says so."""
    from zoo.calibration import describe

    record = row.get("calibration")
    if record:
        return describe(record)
    return "not recorded (an older build): unknown" if row.get("precision") == "int8" else None


def worst_parity(sets: Optional[Mapping[str, Any]]) -> Tuple[Optional[float], Optional[float]]:
    """Lowest cosine and largest max-abs over the sets that decide the pass (an ungated set only reports)."""
    if not sets:
        return None, None
    chosen = [p for p in sets.values() if isinstance(p, dict) and "cosine" in p and p.get("gated", True)]
    if not chosen:
        return None, None
    return min(float(p["cosine"]) for p in chosen), max(float(p["max_abs"]) for p in chosen)


def stages_line(timings: Mapping[str, float]) -> str:
    """``import 1.3 init 2.0 ...`` in pipeline order; stages under 0.05 s are left out (JSON has them all)."""
    order = [s for s in STAGE_ORDER if s in timings] + sorted(s for s in timings if s not in STAGE_ORDER)
    return " ".join(f"{s} {timings[s]:.1f}" for s in order if timings[s] >= 0.05)


def skipped_line(skipped: Sequence[Dict[str, str]]) -> str:
    """``skipped 3 folder(s): 2 unreadable manifest.json, 1 staging folder``: how many, grouped by kind."""
    kinds: Dict[str, int] = {}
    for s in skipped:
        kind = s["reason"].split(" (")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return f"skipped {len(skipped)} folder(s): " + ", ".join(f"{n} {k}" for k, n in kinds.items())


def _first(items: Any) -> Dict[str, Any]:
    return items[0] if isinstance(items, list) and items and isinstance(items[0], dict) else {}


def _whole(x: Any) -> Any:
    """25029000.0 -> 25029000: a count published as a float reads as a count."""
    return int(x) if isinstance(x, float) and x.is_integer() else x


def _g(x: Optional[int]) -> Optional[float]:
    return None if x is None else round(x / 1e9, 3)


def existing_out_dir(cfg: Any) -> Path:
    """``out_dir`` of the config, which must be a folder (one line otherwise); for a store URL, a local
    shadow of the store (zoo.remote.artifacts.shadow_tree)."""
    from zoo.remote.location import is_url

    if is_url(cfg.out_dir):
        from zoo.remote.artifacts import shadow_tree

        return shadow_tree(str(cfg.out_dir), cfg.store.endpoint_url)
    root = Path(str(cfg.out_dir)).expanduser()
    if not root.is_dir():
        raise UserError(f"out_dir={cfg.out_dir}: no such folder; build artifacts with `python -m zoo convert` "
                        f"or point out_dir at the folder that holds them")
    return root


def shown_out_dir(cfg: Any, root: Path) -> str:
    """What to call the artifacts' home in output: the store URL the user gave, else the folder."""
    from zoo.remote.location import is_url

    return str(cfg.out_dir).rstrip("/") if is_url(cfg.out_dir) else str(root)


def registry_facts() -> Tuple[PublishedTop1, Dict[str, List[str]]]:
    """Published top-1 per (variant, source, tag), and each variant's aliases."""
    from zoo.artifact_validation import published_top1
    from zoo.registry.loader import load_registry

    reg = load_registry()
    top1: Dict[Tuple[str, str, str], Tuple[float, str]] = {}
    for v in reg.variants.values():
        for w in v.weights:
            value, where = published_top1(w)
            if value is not None:
                top1[(v.name, w.source, w.tag)] = (value, where["doc"])
    aliases: Dict[str, List[str]] = {}
    for alias, name in reg.aliases.items():
        aliases.setdefault(name, []).append(alias)
    return top1, aliases


def display_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """The terminal and markdown view: numbers at the precision a reader compares them at."""
    def fmt(key: str, spec: str) -> None:
        if out.get(key) is not None:
            out[key] = format(out[key], spec)

    out = dict(row)
    for key in ("params", "params_published"):
        fmt(key, ",")
    for key in ("source_cosine", "target_cosine"):
        fmt(key, ".7f")
    for key in ("source_max_abs", "target_max_abs"):
        fmt(key, ".2e")
    for key in ("top1", "top5"):
        fmt(key, ".3f")
    for key in ("img_s", "p50_ms"):
        fmt(key, ".1f")
    if out.get("gmacs_published") is not None and out.get("gmacs_published_convention"):
        out["gmacs_published"] = f"{out['gmacs_published']:g} {out['gmacs_published_convention']}"
    if out.get("target_cosine") is None and out.get("target_parity"):
        out["target_cosine"] = "skipped"
    out["calibration"] = calibration_line(row)
    return out
