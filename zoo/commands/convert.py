"""`zoo convert`: one (variant, source, tag) to one target, validated, with a one-screen summary."""
from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ContextManager, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from zoo.converters.accuracy_gate import AccuracyRequest
from zoo.converters.pipeline import ConvertRequest, Result, ValidationFailed, convert
from zoo.errors import Unavailable, UserError
from zoo.registry.loader import load_registry, size_of, typed
from zoo.registry.query import resolve_variant, select_weights
from zoo.registry.schema import Variant


def build_request(cfg: DictConfig) -> ConvertRequest:
    if cfg.get("model") is None:
        raise UserError("convert needs a variant: python -m zoo convert model=resnext50_32x4d [source=timm] target=onnx")
    reg = load_registry()
    resolve_variant(reg, cfg.model.name)
    # The composed model config, overrides included, must still satisfy the schema.
    variant = typed(Variant, OmegaConf.to_container(cfg.model, resolve=True), Path(f"model={cfg.model.name}"), "model.")
    variant.size = size_of(variant.arch)  # as the loader derives it: from the (possibly overridden) arch
    from zoo.converters.sources import PREFERENCE

    source = cfg.source.name if cfg.get("source") is not None else next(
        (s for s in PREFERENCE if any(w.source == s for w in variant.weights)), variant.weights[0].source)
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
    req = ConvertRequest(
        variant=variant, weights=weights, spec=spec, target=target.name, precision=precision, options=options,
        accuracy=accuracy,
        calib_data=Path(calib).expanduser() if calib is not None else None, golden=bool(cfg.get("golden", False)),
        weights_mode=mode, weights_file=wfile, seed=int(cfg.seed), offline=bool(cfg.offline),
        cache_dir=Path(cfg.cache_dir).expanduser() if cfg.get("cache_dir") else None,
        mirror=Path(cfg.mirror).expanduser() if cfg.get("mirror") else None,
        out_root=Path(cfg.out_dir).expanduser(), force=bool(cfg.force), strict=bool(cfg.strict),
        progress=bool(cfg.progress),
    )
    return req


def _number(cfg: DictConfig, key: str, what: str, minimum: float, integer: bool = False):
    """A numeric key, or None when unset; anything else is one line naming the key and what it takes."""
    raw = cfg.get(key)
    if raw is None:
        return None
    try:
        value = int(str(raw)) if integer else float(str(raw))
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum or isinstance(raw, bool):
        raise UserError(f"{key}={raw}: {what}")
    return value


def accuracy_request(cfg: DictConfig, target, precision: str) -> Optional[AccuracyRequest]:
    """``data=DIR`` (and ``max_drop=``) on an int8 conversion: the accuracy gate's request."""
    max_drop = _number(cfg, "max_drop", "give the largest top-1 drop allowed against fp32, in percentage points "
                                        "(a number >= 0, e.g. max_drop=0.5)", 0.0)
    max_float = _number(cfg, "max_float_layers", "give how many layers may go back to float (an integer >= 1)",
                        1, integer=True)
    limit = _number(cfg, "limit", "give a positive number of images (e.g. limit=300)", 1, integer=True)
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


def _fmt_accuracy(a: Dict[str, Any]) -> str:
    """fp32 against int8 top-1 on the labelled set, the gate, and what went back to float."""
    sub = a["subset"]
    verdict = "measured" if a["passed"] is None else ("ok" if a["passed"] else "FAILED")
    gate = "" if a["max_drop_pp"] is None else f" (max_drop {a['max_drop_pp']})"
    first = f"; first int8 {a['first_int8_top1']:.2f}, layers restored to float" if a["restored"] else ""
    floats = a.get("float_layers")
    kept = "" if floats is None else f"; {len(floats)} compute layer(s) in float"
    return (f"fp32 {a['fp32_top1']:.2f}  int8 {a['int8_top1']:.2f}  drop {a['drop_pp']:.2f} pp{gate}  {verdict}  "
            f"on {sub['images']} images, {sub['classes']} classes{first}{kept}")


def _fmt_parity(p: Dict[str, Any]) -> str:
    return f"cos {p['cosine']:.7f}  max-abs {p['max_abs']:.2e}  top-1 agree {p['top1_agreement']:.0%}"


def summary(result: Result) -> str:
    m = result.manifest
    v = m["validation"]
    files = m["artifact"]["files"]
    size = sum(f["size"] for f in files) / 2**20
    ok = lambda b: "ok" if b else "FAILED"  # noqa: E731
    lines = [
        f"{m['variant']}  {m['source']}/{m['tag']} -> {m['target']} {m['precision']}   [{m['status'].upper()}]"
        + ("  (cache hit)" if result.cache_hit else ""),
        f"  artifact   {result.folder / files[0]['name']}  ({size:.1f} MiB, {len(files)} file(s))",
        f"  weights    {m['weights']['mode']}  sha256 {m['weights']['sha256'][:16]}…",
        f"  params     graph {v['params']['graph']:,}  architecture {v['params']['architecture']:,}  {ok(v['params']['passed'])}",
        f"  MACs       graph {v['macs']['graph'] / 1e9:.3f} G  architecture {v['macs']['architecture'] / 1e9:.3f} G  {ok(v['macs']['passed'])}",
        f"  shapes     in {v['shapes']['input']}  out {v['shapes']['output']}  {ok(v['shapes']['passed'])}",
    ]
    for name, p in v["parity"]["sets"].items():
        lines.append(f"  parity     {name:<7} {_fmt_parity(p)}  {ok(p['passed'])}  (ONNX vs source)")
    t = v.get("target", {})
    for name, p in t.get("parity", {}).get("sets", {}).items():
        verdict = ok(p["passed"]) if p.get("gated", True) else "reported"
        lines.append(f"  {m['target'] + ' ' + m['precision']:<10} {name:<7} {_fmt_parity(p)}  {verdict}  (vs ONNX)")
    if "skipped" in t.get("parity", {}):
        lines.append(f"  {m['target']:<10} parity not run: {t['parity']['skipped']}")
    failed = [c for c in t.get("checks", []) if not c["passed"]]
    if t.get("checks"):
        lines.append(f"  checks     {len(t['checks']) - len(failed)}/{len(t['checks'])} kit/artifact checks passed")
    for c in failed:
        lines.append(f"  FAILED     {c['name']}: {c['detail']}")
    if m.get("calibration"):  # int8: where its ranges came from, generated images said plainly
        from zoo.calibration import describe

        lines.append(f"  calibration {describe(m['calibration'])}")
    acc = v.get("accuracy_control")
    if acc:
        lines.append(f"  int8 top-1 {_fmt_accuracy(acc)}")
    a = m["artifact"]
    lines.append(f"  compiler   {a['compiler']}" + ("" if a["compiled"] else "  (not run: the kit is ready)"))
    lines += [f"  {line}" for line in a.get("summary", [])]
    for p in v["params"]["published"]:
        flag = "  (disputed)" if p["disputed"] else ""
        lines.append(f"  published  params {p['value']:,.0f} ({p['doc']}: {p['table']}) diff {p['relative_diff']:+.2%}{flag}")
    if m["weights"]["mode"] == "random":
        lines.append("  accuracy   skipped: weights=random (a structural dry run)")
    timings = "  ".join(f"{k} {s:.1f}s" for k, s in m["timings_s"].items())
    lines.append(f"  time       {timings}")
    return "\n".join(lines) + "\n"


def is_cache_hit(req: ConvertRequest) -> bool:
    """Whether ``convert(req)`` would return a passed artifact that is already there (nothing loaded)."""
    from zoo.converters.pipeline import artifact_folder_name, request_key
    from zoo.store import MANIFEST, artifact_dir, cache_hit

    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    return not req.force and (folder / MANIFEST).is_file() and cache_hit(folder, request_key(req)) is not None


def run_if_cached(cfg: DictConfig) -> bool:
    """A sweep job's quick path, in the sweep's own process: the request's checks (a combination the
    registry does not have is a UserError here) and a cache hit's summary. False: there is real work."""
    req = build_request(cfg)
    if not is_cache_hit(req):
        return False
    sys.stdout.write(summary(convert(req)))
    return True


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
        from zoo.fetch import default_cache_dir

        ledger = memory_gate.default_ledger(req.cache_dir or default_cache_dir())
    size = req.variant.size or size_of(req.variant.arch)
    need = memory_gate.estimate_peak_bytes(size.fp32_bytes, req.target)
    label = f"{req.variant.name} {req.weights.source}/{req.weights.tag} -> {req.target} {req.precision}"
    return memory_gate.reserved(need, budget, ledger, label)


def run_convert(cfg: DictConfig) -> None:
    req = build_request(cfg)
    try:
        with memory_reservation(req, cfg):
            result = convert(req)
    except ValidationFailed as e:
        sys.stdout.write(summary(Result(e.manifest, e.folder, False)))
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.stdout.write(summary(result))
