"""`zoo convert`: one (variant, source, tag) to one target, validated, with a one-screen summary."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict

from omegaconf import DictConfig, OmegaConf

from zoo.converters.spec import OnnxSpec
from zoo.converters.pipeline import ConvertRequest, Result, ValidationFailed, convert, ensure_supported
from zoo.errors import UserError
from zoo.registry.loader import load_registry, typed
from zoo.registry.query import resolve_variant, select_weights
from zoo.registry.schema import Variant


def build_request(cfg: DictConfig) -> ConvertRequest:
    if cfg.get("model") is None:
        raise UserError("convert needs a variant: python -m zoo convert model=resnext50_32x4d [source=timm] target=onnx")
    reg = load_registry()
    resolve_variant(reg, cfg.model.name)
    # The composed model config, overrides included, must still satisfy the schema.
    variant = typed(Variant, OmegaConf.to_container(cfg.model, resolve=True), Path(f"model={cfg.model.name}"), "model.")
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
    t = cfg.target
    spec = OnnxSpec(opset=int(t.opset), input_name=str(t.input_name), output_name=str(t.output_name),
                    dynamic_batch=bool(t.dynamic_batch), batch=int(t.batch), simplify=bool(t.simplify))
    if spec.batch < 1:
        raise UserError(f"target.batch={spec.batch}: the batch must be a positive integer")
    req = ConvertRequest(
        variant=variant, weights=weights, spec=spec, target=str(t.name), precision=str(cfg.precision.name),
        weights_mode=mode, weights_file=wfile, seed=int(cfg.seed), offline=bool(cfg.offline),
        cache_dir=Path(cfg.cache_dir).expanduser() if cfg.get("cache_dir") else None,
        out_root=Path(cfg.out_dir).expanduser(), force=bool(cfg.force), strict=bool(cfg.strict),
        progress=bool(cfg.progress),
    )
    ensure_supported(req, list(t.precisions))
    return req


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
        lines.append(f"  parity     {name:<7} {_fmt_parity(p)}  {ok(p['passed'])}")
    for p in v["params"]["published"]:
        flag = "  (disputed)" if p["disputed"] else ""
        lines.append(f"  published  params {p['value']:,.0f} ({p['doc']}: {p['table']}) diff {p['relative_diff']:+.2%}{flag}")
    if m["weights"]["mode"] == "random":
        lines.append("  accuracy   skipped: weights=random (a structural dry run)")
    timings = "  ".join(f"{k} {s:.1f}s" for k, s in m["timings_s"].items())
    lines.append(f"  time       {timings}")
    return "\n".join(lines) + "\n"


def run_convert(cfg: DictConfig) -> None:
    req = build_request(cfg)
    try:
        result = convert(req)
    except ValidationFailed as e:
        sys.stdout.write(summary(Result(e.manifest, e.folder, False)))
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.stdout.write(summary(result))
