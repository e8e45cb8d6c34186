"""The Python API: the registry, conversion and validation without the command line.

    import zoo

    zoo.list_checkpoints(filter="resnext101*", source="timm")
    zoo.lookup("resnext50_32x4d", source="torchvision")
    art = zoo.convert("resnext50_32x4d", target="openvino", weights="random", out_dir="artifacts")
    art.status, art.primary, art.manifest["validation"]["target"]["parity"]

Each call composes the same Hydra config as ``python -m zoo COMMAND key=value ...`` (keyword arguments
become overrides; ``overrides=`` passes any other key, e.g. ``{"target.batch": 8}``), goes through the
same checks and raises the same errors, with the messages the CLI prints: :class:`zoo.UserError`
(bad input; the CLI's exit 2), :class:`zoo.ValidationFailed` (an artifact failed a hard check).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, TypedDict, Union

from zoo.errors import UserError

PathLike = Union[str, Path]


class Manifest(TypedDict, total=False):
    """An artifact's ``manifest.json``: the keys every build writes (see the README's convert section)."""

    zoo_version: str
    key: str
    status: str  # passed | kit | failed (zoo.status)
    variant: str
    source: str
    tag: str
    model_name: str
    target: str
    precision: str
    weights: Dict[str, Any]
    onnx: Dict[str, Any]
    canonical: Dict[str, Any]
    options: Dict[str, Any]
    calibration: Optional[Dict[str, Any]]
    artifact: Dict[str, Any]
    tools: Dict[str, str]
    validation: Dict[str, Any]
    timings_s: Dict[str, float]
    peak_rss_mb: Dict[str, Dict[str, float]]


@dataclass(frozen=True)
class Artifact:
    """A built (or found) artifact."""

    folder: Path  # <out_dir>/<variant>/<source>/<tag>/<target>[-<precision>]; for a store, this machine's copy
    primary: Path  # the file to deploy: model.onnx, model.xml, the kit's config ...
    status: str  # passed: all checked here; kit: the vendor's compiler did not run here; failed
    manifest: Manifest
    cache_hit: bool  # True: an identical earlier build was reused (a store's hit downloads nothing: no copy here)
    location: Optional[str] = None  # out_dir=s3://...: the artifact's URL in the store


@dataclass(frozen=True)
class ValidationReport:
    what: str  # the artifact folder, or "source model"
    report: Dict[str, Any]  # "accuracy" and / or "golden", as written into the manifest
    failed: List[str]  # the checks that failed ("accuracy", "golden")


def compose(command: str, overrides: Sequence[str] = ()) -> Any:
    """The config ``python -m zoo COMMAND *overrides`` runs with, through the CLI's own checks
    (zoo.config): the registry's names, then the typed config with its bounds."""
    from zoo.config.check import composed
    from zoo.config.overrides import check_overrides
    from zoo.registry.loader import conf_dir

    return composed(command, check_overrides(list(overrides)), conf_dir())


def _overrides(given: Mapping[str, Any], extra: Optional[Mapping[str, Any]]) -> List[str]:
    """keyword arguments (None: not given) and ``overrides=`` as Hydra overrides."""
    out = []
    for key, value in {**given, **(extra or {})}.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = str(value).lower()
        out.append(f"{key}={value}")
    return out


def list_checkpoints(filter: Optional[str] = None, source: Optional[str] = None) -> List[Dict[str, Any]]:
    """One dict per (variant, source, tag) in the registry, as ``zoo list format=json`` prints them."""
    from zoo.registry.loader import load_registry
    from zoo.registry.query import list_rows

    reg = load_registry()
    if source is not None and source not in reg.sources:
        raise UserError(f"unknown source '{source}': known sources are {', '.join(sorted(reg.sources))}")
    return list_rows(reg, filter, source)


def lookup(model: str, source: Optional[str] = None, tag: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every published number for a variant (or an alias, or an old checkpoint name), each with its document."""
    from zoo.registry.loader import load_registry
    from zoo.registry.query import lookup_rows, resolve_checkpoint, resolve_variant

    reg = load_registry()
    pinned = resolve_checkpoint(reg, model)
    if pinned is not None:  # an old name names one checkpoint
        source, tag = source or pinned.source, tag or pinned.tag
    if source is not None and source not in reg.sources:
        raise UserError(f"unknown source '{source}': known sources are {', '.join(sorted(reg.sources))}")
    return lookup_rows(reg, resolve_variant(reg, model), source, tag)


def convert(model: str, *, source: Optional[str] = None, tag: Optional[str] = None, target: Optional[str] = None,
            precision: Optional[str] = None, weights: Union[str, PathLike] = "pretrained",
            out_dir: PathLike = "artifacts", force: bool = False, strict: bool = True, progress: bool = False,
            overrides: Optional[Mapping[str, Any]] = None) -> Artifact:
    """Build (or find) one artifact, validated; ``strict=False`` returns a failed one instead of raising."""
    from zoo.build.from_config import build_request, memory_reservation
    from zoo.build.pipeline import convert as run

    cfg = compose("convert", _overrides(
        {"model": model, "source": source, "tag": tag, "target": target, "precision": precision,
         "weights": weights, "out_dir": out_dir, "force": force, "strict": strict, "progress": progress}, overrides))
    req = build_request(cfg)
    with memory_reservation(req, cfg):
        result = run(req)
    m = result.manifest
    return Artifact(folder=result.folder, primary=result.folder / m["artifact"]["primary"], status=m["status"],
                    manifest=m, cache_hit=result.cache_hit, location=result.location)


def validate(model: str, *, source: Optional[str] = None, tag: Optional[str] = None, target: Optional[str] = None,
             precision: Optional[str] = None, data: Optional[PathLike] = None, golden: bool = False,
             weights: Union[str, PathLike] = "pretrained", out_dir: PathLike = "artifacts",
             overrides: Optional[Mapping[str, Any]] = None) -> ValidationReport:
    """Top-1 / top-5 of a built artifact on ``data`` against the published figure, and / or its golden check."""
    from zoo.artifact_validation import validate_from_config

    cfg = compose("validate", _overrides(
        {"model": model, "source": source, "tag": tag, "target": target, "precision": precision, "data": data,
         "golden": golden, "weights": weights, "out_dir": out_dir, "progress": False}, overrides))
    result = validate_from_config(cfg)
    return ValidationReport(what=result.what, report=result.report, failed=result.failed)
