"""`zoo convert`: one (variant, source, tag) to one target, validated, with a one-screen summary."""
from __future__ import annotations

import sys
from typing import Any, Dict

from omegaconf import DictConfig

from zoo.build.from_config import build_request, is_cache_hit, memory_reservation
from zoo.build.pipeline import ValidationFailed, convert
from zoo.build.request import Result


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
        f"  artifact   {result.where}/{files[0]['name']}  ({size:.1f} MiB, {len(files)} file(s))",
        f"  weights    {m['weights']['mode']}  sha256 {m['weights']['sha256'][:16]}…",
        f"  params     graph {v['params']['graph']:,}  architecture {v['params']['architecture']:,}  {ok(v['params']['passed'])}",
        f"  MACs       graph {v['macs']['graph'] / 1e9:.3f} G  architecture {v['macs']['architecture'] / 1e9:.3f} G  {ok(v['macs']['passed'])}",
        f"  shapes     in {v['shapes']['input']}  out {v['shapes']['output']}  {ok(v['shapes']['passed'])}",
    ]
    for name, p in v["parity"]["sets"].items():
        lines.append(f"  parity     {name:<7} {_fmt_parity(p)}  {ok(p['passed'])}  (ONNX vs source)")
    c = m.get("canonical", {})
    if c.get("reused"):  # the source model was not built again: its checks above are the canonical model's
        lines.append(f"  canonical  reused {c['folder']} (built in {c['built_in_s']:.1f}s by an earlier job)")
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
        if p.get("counted", "trainable") != "trainable":  # a figure that counts more than the learnable weights
            flag += f"  (counts {p['counted'].replace('_', ' ')})"
        lines.append(f"  published  params {p['value']:,.0f} ({p['doc']}: {p['table']}) diff {p['relative_diff']:+.2%}{flag}")
    if m["weights"]["mode"] == "random":
        lines.append("  accuracy   skipped: weights=random (a structural dry run)")
    timings = "  ".join(f"{k} {s:.1f}s" for k, s in m["timings_s"].items())
    lines.append(f"  time       {timings}")
    return "\n".join(lines) + "\n"


def run_if_cached(cfg: DictConfig) -> bool:
    """A sweep job's quick path, in the sweep's own process: the request's checks (a combination the
    registry does not have is a UserError here) and a cache hit's summary. False: there is real work."""
    req = build_request(cfg)
    if not is_cache_hit(req):
        return False
    sys.stdout.write(summary(convert(req)))
    return True


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
