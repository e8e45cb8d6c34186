"""A conversion request from a composed config: every key checked before any work, one line each.

The CLI's ``convert``, ``validate`` and ``publish`` and the Python API (``zoo.api``) all start here.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from zoo.build.request import ConvertRequest
from zoo.converters.accuracy_gate import AccuracyRequest
from zoo.errors import Unavailable, UserError
from zoo.registry.loader import composed_variant, load_registry, size_of
from zoo.registry.query import resolve_variant, select_weights


def build_request(cfg: DictConfig) -> ConvertRequest:
    if cfg.get("model") is None:
        raise UserError("convert needs a variant: python -m zoo convert model=resnext50_32x4d [source=timm] target=onnx")
    reg = load_registry()
    resolve_variant(reg, cfg.model.name)
    variant = composed_variant(reg, OmegaConf.to_container(cfg.model, resolve=True))
    from zoo.converters.sources import default_source

    source = default_source(variant, cfg.source.name if cfg.get("source") is not None else None)
    weights = select_weights(reg, variant, source, cfg.get("tag"))

    mode, wfile = str(cfg.weights), None
    if mode not in ("pretrained", "random"):
        wfile = Path(mode).expanduser()
        if not wfile.is_file():
            raise UserError(f"weights={mode}: no such file; use weights=pretrained, weights=random or weights=/path/to/checkpoint")
        mode = "file"
    from zoo.targets import get_target

    options = OmegaConf.to_container(cfg.target, resolve=True)
    target = get_target(str(options["name"]))
    precision = str(cfg.precision.name) if cfg.get("precision") is not None else str(options["default_precision"])
    supported = [str(p) for p in options["precisions"]]
    if precision not in supported:
        raise Unavailable(f"target {target.name} does not support precision {precision}; it supports {', '.join(supported)}")
    target.check_options(options, precision)
    spec = target.onnx_spec(options, precision)
    calib = cfg.get("calib_data")
    if calib is not None and not Path(calib).expanduser().is_dir():
        raise UserError(f"calib_data={calib}: no such folder; give a folder of images (an ImageFolder tree works)")
    accuracy = accuracy_request(cfg, target, precision)
    out_root, store = _out_root(str(cfg.out_dir))
    req = ConvertRequest(
        variant=variant, weights=weights, spec=spec, target=target.name, precision=precision, options=options,
        accuracy=accuracy,
        calib_data=Path(calib).expanduser() if calib is not None else None, golden=bool(cfg.get("golden", False)),
        keep_state=bool(cfg.get("keep_state", False)),
        weights_mode=mode, weights_file=wfile, seed=int(cfg.seed), offline=bool(cfg.offline),
        cache_dir=_folder_or_url(cfg.get("cache_dir")),
        mirror=Path(cfg.mirror).expanduser() if cfg.get("mirror") else None,
        download_timeout=float(cfg.download_timeout),
        out_root=out_root, force=bool(cfg.force), strict=bool(cfg.strict), progress=bool(cfg.progress), store_url=store,
        store_endpoint=cfg.store.endpoint_url, lease_s=float(cfg.store.lease_s),
    )
    if isinstance(req.cache_dir, str) and mode == "pretrained":  # a shared cache: reachable, before any work
        from zoo.remote.location import open_location

        open_location(req.cache_dir, "cache_dir", req.store_endpoint)
    return req


def _out_root(out_dir: str) -> Tuple[Path, Optional[str]]:
    """Where a build is written here, and the store URL it is uploaded to (None: out_dir is a folder)."""
    from zoo.remote.location import is_url

    if not is_url(out_dir):
        return Path(out_dir).expanduser(), None
    from zoo.remote.artifacts import staging_root

    return staging_root(out_dir), out_dir


def _folder_or_url(value: Any) -> Any:
    if not value:
        return None
    from zoo.remote.location import is_url

    return str(value) if is_url(value) else Path(str(value)).expanduser()


def accuracy_request(cfg: DictConfig, target, precision: str) -> Optional[AccuracyRequest]:
    """``data=DIR`` (and ``max_drop=``) on an int8 conversion: the accuracy gate's request."""
    # types and bounds: zoo.config.schema, checked when the config was composed
    max_drop, max_float, limit = cfg.get("max_drop"), cfg.get("max_float_layers"), cfg.get("limit")
    data = cfg.get("data")
    if data is None:
        if max_drop is not None or max_float is not None:
            raise UserError("max_drop= needs data=DIR: a labelled image folder (ImageFolder tree, or images with "
                            "val_map.txt / val_label.txt) to measure int8 top-1 against fp32 on")
        return None
    if precision != "int8":
        if max_drop is not None:
            raise UserError("max_drop= is for int8 (accuracy-aware quantization); add precision=int8")
        return None  # data= is validate's key too; a float conversion has nothing to gate
    if max_drop is not None and not target.restores_accuracy:
        raise UserError(f"max_drop=: target {target.name} cannot return int8 layers to float; "
                        f"accuracy-aware int8 is built for target=onnx and target=openvino")
    folder = Path(str(data)).expanduser()
    if not folder.is_dir():
        raise UserError(f"data={data}: no such folder; give an ImageFolder tree or a folder with "
                        f"val_label.txt / val_map.txt")
    return AccuracyRequest(data=folder, max_drop=max_drop, limit=limit, max_float_layers=max_float)


def is_cache_hit(req: ConvertRequest) -> bool:
    """Whether ``convert(req)`` would return a passed artifact that is already there (nothing loaded)."""
    from zoo.build.request import artifact_folder_name, request_key
    from zoo.store import MANIFEST, artifact_dir, cache_hit

    if req.store_url:
        from zoo.remote.artifacts import is_remote_hit

        return is_remote_hit(req)
    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    return not req.force and (folder / MANIFEST).is_file() and cache_hit(folder, request_key(req)) is not None


def memory_reservation(req: ConvertRequest, cfg: DictConfig) -> ContextManager[None]:
    """Hold the conversion's estimated peak memory in this machine's ledger (zoo.memory_gate).

    A cache hit loads nothing, so it reserves nothing and never waits behind a big conversion.
    """
    from zoo import memory_gate

    budget = memory_gate.budget_bytes(cfg.get("memory_budget_gb"))
    if is_cache_hit(req):
        return nullcontext()
    if cfg.get("memory_ledger"):
        ledger = Path(cfg.memory_ledger).expanduser()
    else:
        from zoo.cache_dir import default_cache_dir

        # one ledger per machine: a shared store (cache_dir=s3://...) is not where this host's memory is counted
        local = req.cache_dir if isinstance(req.cache_dir, Path) else None
        ledger = memory_gate.default_ledger(local or default_cache_dir())
    size = req.variant.size or size_of(req.variant.arch)
    need = memory_gate.estimate_peak_bytes(size.fp32_bytes, req.target)
    label = f"{req.variant.name} {req.weights.source}/{req.weights.tag} -> {req.target} {req.precision}"
    return memory_gate.reserved(need, budget, ledger, label)
