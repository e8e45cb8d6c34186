"""The two files a publish generates: ``config.json`` (what a runtime needs to feed the model and read
its output) and ``README.md`` (a Hugging Face model card), both from the registry and the manifest only.

Both are deterministic functions of the manifest, the registry entry and the artifact's primary file:
the same build gives byte-identical files, which is what makes a re-publish a no-op.

The card's ``model-index`` holds one result per source of numbers: each published row of the weights,
with its document and table as the ``source`` (only for the registry's own checkpoint in an artifact that
passed: untrained, user-supplied or failed builds do not inherit those claims), and what this build
measured (``manifest.json``: accuracy where ``zoo validate`` ran, parity per input set).
huggingface_hub's ``ModelCardData`` merges results that share a dataset when it re-serialises a card,
keeping only the first ``source``; every metric's ``name`` therefore carries its provenance too, so
nothing is lost in that round trip.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from zoo.calibration import describe, is_generated
from zoo.registry.loader import Registry
from zoo.registry.query import effective_input
from zoo.registry.schema import InputSpec, Variant, Weights
from zoo.status import FAILED, KIT, checks_passed
from zoo.targets import get_target, target_class

IMAGENET = {"name": "ImageNet-1k", "type": "imagenet-1k", "split": "validation"}
PARITY_DATASET = {"name": "seeded parity inputs (zoo.validators.inputs)", "type": "zoo-parity-inputs"}
TASK = {"type": "image-classification", "name": "Image Classification"}
_CHECKS = ("params", "macs", "shapes", "parity", "target")


def failed_checks(manifest: Dict[str, Any]) -> List[str]:
    v = manifest["validation"]
    return [k for k in _CHECKS if not v.get(k, {}).get("passed", False)]


def _shape(manifest: Dict[str, Any], tail: List[int]) -> List[Any]:
    o = manifest["onnx"]
    return ["batch" if o["dynamic_batch"] else int(o["batch"]), *tail]


def input_dtype(folder: Path, manifest: Dict[str, Any]) -> str:
    """The element type the primary file's input takes (float16 for an fp16 ONNX without float32 I/O)."""
    primary = folder / manifest["artifact"]["primary"]
    if primary.suffix != ".onnx" or not primary.is_file():
        return "float32"
    import onnx
    from onnx import helper

    graph = onnx.load(str(primary), load_external_data=False).graph
    initialisers = {i.name for i in graph.initializer}
    first = next(i for i in graph.input if i.name not in initialisers)
    return helper.tensor_dtype_to_np_dtype(first.type.tensor_type.elem_type).name


def _input_shape(manifest: Dict[str, Any], spec: InputSpec) -> List[Any]:
    hw = [spec.size, spec.size]
    return _shape(manifest, [3, *hw] if spec.layout.value == "NCHW" else [*hw, 3])


def preprocessing(spec: InputSpec) -> Dict[str, Any]:
    steps = [
        "decode, convert to RGB",
        f"resize so the short side is {spec.resize_short()} ({spec.interpolation.value})",
        f"centre-crop {spec.size}x{spec.size}",
        "scale to [0, 1] (divide by 255)",
        *(["reverse channels to BGR"] if spec.color.value == "BGR" else []),
        "normalise per channel: (x - mean) / std",
        "HWC -> CHW, add a batch dimension" if spec.layout.value == "NCHW" else "add a batch dimension (NHWC)",
    ]
    return {
        "resize_short": spec.resize_short(), "crop_pct": spec.crop_pct, "interpolation": spec.interpolation.value,
        "crop_size": spec.size, "rescale_factor": 1 / 255, "mean": list(spec.mean), "std": list(spec.std),
        "color": spec.color.value, "layout": spec.layout.value, "steps": steps,
    }


def config_json(manifest: Dict[str, Any], variant: Variant, weights: Weights, dtype: str) -> Dict[str, Any]:
    """What a runtime user needs: the files, the input tensor, the preprocessing, the output and the labels."""
    from zoo.labels import imagenet_labels

    spec = effective_input(variant, weights)
    o, a = manifest["onnx"], variant.arch
    labels = imagenet_labels() if a.num_classes == 1000 else []
    semantics = weights.output.value
    return {
        "variant": variant.name,
        "architecture": {"family": "resnext", "layers": list(a.layers), "cardinality": a.cardinality,
                         "base_width": a.base_width, "stem": a.stem.value, "shortcut": a.shortcut.value},
        "source": manifest["source"], "tag": manifest["tag"], "model_name": manifest["model_name"],
        "license": weights.license,
        "target": manifest["target"], "precision": manifest["precision"],
        "model_file": manifest["artifact"]["primary"],
        "files": [f["name"] for f in manifest["artifact"]["files"]],
        "input": {"name": o["input_name"], "shape": _input_shape(manifest, spec), "dtype": dtype},
        "preprocessing": preprocessing(spec),
        "output": {"name": o["output_name"], "shape": _shape(manifest, [a.num_classes]), "semantics": semantics,
                   "note": "class probabilities (softmax applied in the model)" if semantics == "probs"
                   else "raw class scores: apply softmax for probabilities"},
        "num_labels": a.num_classes,
        "id2label": {str(i): name for i, name in enumerate(labels)},
    }


# ---------------------------------------------------------------- model-index


def _result(dataset: Dict[str, Any], metrics: List[Dict[str, Any]], source: Optional[Dict[str, str]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {"task": dict(TASK), "dataset": dict(dataset), "metrics": metrics}
    if source is not None:
        out["source"] = source
    return out


def published_results(reg: Registry, weights: Weights) -> List[Dict[str, Any]]:
    """One result per published row with a top-1 or top-5, its document and table as the source."""
    out = []
    for p in weights.published:
        doc = reg.documents[p.provenance.doc]
        where = f"{p.provenance.doc}: {p.provenance.table}"
        metrics = [{"type": kind, "value": value, "name": f"{label} (%), published ({where})"}
                   for kind, label, value in (("accuracy", "top-1 accuracy", p.top1),
                                              ("top_5_accuracy", "top-5 accuracy", p.top5)) if value is not None]
        if metrics:
            source = {"name": f"{doc.title} — {p.provenance.table}", "url": doc.url} if doc.url else None
            out.append(_result(IMAGENET, metrics, source))
    return out


def measured_results(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Accuracy measured on this artifact (``zoo validate``) and parity on each seeded input set."""
    out = []
    r = (manifest.get("accuracy") or {}).get("result") or {}
    if r.get("top1") is not None:
        how = f"measured on {r['n_evaluated']} images with this artifact (manifest.json: accuracy)"
        out.append(_result(IMAGENET, [
            {"type": "accuracy", "value": r["top1"], "name": f"top-1 accuracy (%), {how}"},
            {"type": "top_5_accuracy", "value": r["top5"], "name": f"top-5 accuracy (%), {how}"}], None))
    v = manifest["validation"]
    target_sets = (v.get("target", {}).get("parity") or {}).get("sets", {})
    artifact = f"{manifest['target']} {manifest['precision']}"
    for name, p in v["parity"]["sets"].items():
        metrics = _parity_metrics(p, f"canonical ONNX vs {manifest['source']} source model")
        if name in target_sets:
            metrics += _parity_metrics(target_sets[name], f"{artifact} artifact vs canonical ONNX")
        out.append(_result({**PARITY_DATASET, "config": name}, metrics, None))
    return out


def _parity_metrics(p: Dict[str, Any], what: str) -> List[Dict[str, Any]]:
    return [{"type": "cosine_similarity", "value": p["cosine"], "name": f"cosine similarity, {what}"},
            {"type": "max_abs_error", "value": p["max_abs"], "name": f"max abs difference, {what}"},
            {"type": "top1_agreement", "value": p["top1_agreement"], "name": f"top-1 agreement, {what}"}]


def front_matter(manifest: Dict[str, Any], reg: Registry, weights: Weights, repo_id: str) -> Dict[str, Any]:
    # The checkpoint's published accuracy is claimed for this file only when it holds those weights and passed.
    claims = manifest["weights"]["mode"] == "pretrained" and manifest["status"] == "passed"
    results = published_results(reg, weights) if claims else []
    results += measured_results(manifest)
    tags = ["image-classification", "resnext", manifest["variant"], manifest["source"], manifest["target"],
            manifest["precision"], "resnext-zoo"]
    if manifest["status"] == FAILED:
        tags.append("failed-validation")
    elif manifest["status"] == KIT:
        tags.append("build-kit")
    if manifest["weights"]["mode"] == "random":
        tags.append("untrained")
    meta: Dict[str, Any] = {}
    library = target_class(manifest["target"]).hub_library  # None for a vendor kit: the vendor's SDK runs it
    if library:
        meta["library_name"] = library
    meta.update({
        "license": weights.license, "datasets": ["imagenet-1k"], "pipeline_tag": "image-classification",
        "tags": list(dict.fromkeys(tags)),
        "model-index": [{"name": repo_id.split("/", 1)[1], "results": results}],
    })
    return meta


# ---------------------------------------------------------------- body


def _fmt_parity(p: Dict[str, Any]) -> str:
    return f"cosine {p['cosine']:.7f}, max abs {p['max_abs']:.2e}, top-1 agreement {p['top1_agreement']:.0%}"


def _ok(passed: Optional[bool]) -> str:
    return {True: "passed", False: "**FAILED**", None: "reported"}[passed]


def _banners(manifest: Dict[str, Any]) -> List[str]:
    out = []
    if manifest["status"] == KIT:
        out.append("> **BUILD KIT, NOT COMPILED.** The vendor's compiler was not run where this was built: the kit's "
                   "own checks passed, but no engine was built or run. Build it with the commands below on a machine "
                   "that has the compiler, then check it there.")
    elif not checks_passed(manifest["status"]):
        out.append(f"> **FAILED VALIDATION.** This artifact did not pass its own checks "
                   f"(failed: {', '.join(failed_checks(manifest)) or 'see manifest.json'}) and was published with "
                   "`force=true`. Do not use it for anything but investigating the failure.")
    if is_generated(manifest.get("calibration")):  # publish refuses these without force=true
        out.append("> **GENERATED CALIBRATION: INT8 ACCURACY UNKNOWN.** This int8 artifact was calibrated on seeded "
                   "generated images, not real data, and was published anyway with `force=true`. Do not deploy it "
                   "as it is: rebuild it with `calib_data=DIR` (a folder of real images) and publish that.")
    w = manifest["weights"]
    if w["mode"] == "random":
        out.append(f"> **UNTRAINED.** Built from freshly initialised weights (seed {w.get('seed')}), a structural "
                   "dry run of the conversion: its predictions are meaningless. The published figures below "
                   "belong to the registered checkpoint, not to this file.")
    elif w["mode"] == "file":
        out.append("> Built from a checkpoint file given by the publisher, not the registry's download: the "
                   "published figures below belong to the registered checkpoint and may not apply.")
    return out


def _files_table(manifest: Dict[str, Any]) -> List[str]:
    lines = ["| file | bytes | sha256 |", "|---|---:|---|"]
    lines += [f"| `{f['name']}` | {f['size']:,} | `{f['sha256']}` |" for f in manifest["artifact"]["files"]]
    return lines + ["", "`config.json` holds the input, preprocessing, output and labels; `manifest.json` the "
                        "full build and validation record (its sha256 is named in the commit message)."]


def _weights_section(manifest: Dict[str, Any], reg: Registry, weights: Weights) -> List[str]:
    src = reg.sources[manifest["source"]]
    w = manifest["weights"]
    origin = {"pretrained": f"downloaded from {w.get('origin') or weights.hf_hub_id or weights.url}",
              "random": f"freshly initialised (seed {w.get('seed')}), not trained",
              "file": "a checkpoint file given at build time"}[w["mode"]]
    lines = [
        f"- source: [{src.title}]({src.homepage}), weight tag `{manifest['tag']}`, "
        f"builder `{manifest['model_name']}` ({src.checkpoint_format})",
        f"- registered checkpoint: {weights.hf_hub_id or weights.url or 'not given'}",
        f"- converted weights: {origin}; sha256 `{w['sha256']}`",
        f"- license: `{weights.license}` (the checkpoint's own license)",
    ]
    lines += [f"- note: {n}" for n in weights.notes]
    return lines


def _conversion_section(manifest: Dict[str, Any], spec: InputSpec, cfg: Dict[str, Any]) -> List[str]:
    o, t, a = manifest["onnx"], manifest["tools"], manifest["artifact"]
    tools = ", ".join(f"{k} {v}" for k, v in sorted(t.items()))
    batch = "dynamic batch" if o["dynamic_batch"] else f"static batch {o['batch']}"
    lines = [
        f"The {manifest['source']} model was built with its own library, exported to ONNX opset {o['opset']} "
        f"({batch}{', simplified with onnxsim' if o.get('simplify') else ''}), checked against the source model, "
        f"then built for {manifest['target']} {manifest['precision']} by {a['compiler']}"
        + ("." if a["compiled"] else " (not compiled here: this is the vendor's build kit)."),
        "",
        f"- input `{cfg['input']['name']}` {cfg['input']['shape']} {cfg['input']['dtype']}, "
        f"output `{cfg['output']['name']}` {cfg['output']['shape']}: {cfg['output']['note']}",
        f"- tools: {tools}",
    ]
    if manifest.get("calibration"):
        lines.append(f"- calibration: {describe(manifest['calibration'])}")
    lines += [f"- {s}" for s in a.get("summary", [])]
    return lines


def _validation_section(manifest: Dict[str, Any]) -> List[str]:
    v = manifest["validation"]
    lines = [f"Status: **{manifest['status']}**.", "", "| check | result | verdict |", "|---|---|---|",
             f"| parameters | graph {v['params']['graph']:,}, architecture {v['params']['architecture']:,} "
             f"| {_ok(v['params']['passed'])} |",
             f"| MACs | graph {v['macs']['graph'] / 1e9:.3f} G, architecture {v['macs']['architecture'] / 1e9:.3f} G "
             f"| {_ok(v['macs']['passed'])} |",
             f"| shapes | input {v['shapes']['input']}, output {v['shapes']['output']} "
             f"| {_ok(v['shapes']['passed'])} |"]
    for name, p in v["parity"]["sets"].items():
        lines.append(f"| parity `{name}`, ONNX vs source | {_fmt_parity(p)} | {_ok(p['passed'])} |")
    t = v.get("target", {})
    for name, p in (t.get("parity") or {}).get("sets", {}).items():
        lines.append(f"| parity `{name}`, {manifest['target']} {manifest['precision']} vs ONNX | {_fmt_parity(p)} "
                     f"| {_ok(p['passed'] if p.get('gated', True) else None)} |")
    if "skipped" in (t.get("parity") or {}):
        lines.append(f"| {manifest['target']} parity | not run: {t['parity']['skipped']} | |")
    for c in t.get("checks", []):
        lines.append(f"| {c['name']} | {c['detail']} | {_ok(c['passed'])} |")
    acc = manifest.get("accuracy")
    r = (acc or {}).get("result") or {}
    if r.get("top1") is not None:
        verdict = acc.get("verdict", {})
        lines.append(f"| accuracy | top-1 {r['top1']:.3f} %, top-5 {r['top5']:.3f} % on {r['n_evaluated']} of "
                     f"{acc['images_in_set']} images; published top-1 {acc.get('published_top1')} "
                     f"| {_ok(verdict.get('passed'))} |")
    else:
        reason = v.get("accuracy", {}).get("skipped", "not measured")
        lines.append(f"| accuracy | not measured ({reason}) | |")
    return lines


def _published_section(reg: Registry, weights: Weights) -> List[str]:
    rows = [p for p in weights.published if p.top1 is not None or p.top5 is not None]
    if not rows:
        return ["No published accuracy for this checkpoint."]
    lines = ["| top-1 % | top-5 % | document | table |", "|---:|---:|---|---|"]
    for p in rows:
        doc = reg.documents[p.provenance.doc]
        title = f"[{doc.title}]({doc.url})" if doc.url else doc.title
        lines.append(f"| {p.top1 if p.top1 is not None else ''} | {p.top5 if p.top5 is not None else ''} "
                     f"| {title} | {p.provenance.table} |")
    return lines


def _speed_section(manifest: Dict[str, Any], variant: Variant) -> List[str]:
    """What ``zoo bench`` measured, on each machine that measured this artifact, and the vendors' own figures
    beside them (other hardware: shown, never compared)."""
    from zoo.bench.published import HARDWARE_NOTE, vendor_figures

    lines: List[str] = []
    entries = sorted((manifest.get("bench") or {}).values(), key=lambda e: e.get("measured_at", ""))
    if entries:
        lines += ["Measured with `python -m zoo bench` (the runtime's own session, random input, windows until "
                  "three agree within the stability margin):", "",
                  "| machine | threads | runtime | batch | images/s | p50 ms | p90 ms | p99 ms | stable |",
                  "|---|---:|---|---:|---:|---:|---:|---:|---|"]
        for e in entries:
            m = e["machine"]
            where = f"{m['cpu']}, {m['logical_cores']} cores ({', '.join(m.get('isa') or []) or 'no listed ISA'})"
            for p in e["points"]:
                lat = p["latency_ms"]
                lines.append(f"| {where} | {e['threads']} | {e['runtime']} | {p['batch']} | {p['throughput']:.1f} "
                             f"| {lat['p50']:.2f} | {lat['p90']:.2f} | {lat['p99']:.2f} | {'yes' if p['stable'] else 'no'} |")
    else:
        lines.append("Not measured yet (`python -m zoo bench model=... target=...` records it).")
    vendor = vendor_figures(variant.name)
    if vendor:
        lines += ["", f"Vendors' published figures for {variant.name}, {HARDWARE_NOTE}:", "",
                  "| target | device | precision | batch | FPS | latency ms | published in |", "|---|---|---|---:|---:|---:|---|"]
        for f in vendor:
            lines.append(f"| {f['target']} | {f['device'] or ''} | {f['precision']} | {f['batch'] or ''} | "
                         f"{'' if f['fps'] is None else f['fps']} | {'' if f['latency_ms'] is None else f['latency_ms']} "
                         f"| {f['published_in']} |")
    return lines


def _preprocess_code(spec: InputSpec) -> List[str]:
    resample = "BICUBIC" if spec.interpolation.value == "bicubic" else "BILINEAR"
    short, size = spec.resize_short(), spec.size
    lines = [
        "def preprocess(path):",
        '    img = Image.open(path).convert("RGB")',
        "    w, h = img.size",
        f"    new = ({short}, int({short} * h / w)) if w <= h else (int({short} * w / h), {short})",
        f"    img = img.resize(new, Image.Resampling.{resample})",
        f"    left, top = int(round((new[0] - {size}) / 2)), int(round((new[1] - {size}) / 2))",
        f"    img = img.crop((left, top, left + {size}, top + {size}))",
        "    x = np.asarray(img, dtype=np.float32) / 255.0",
    ]
    if spec.color.value == "BGR":
        lines.append("    x = x[..., ::-1]")
    lines.append(f"    x = (x - np.array({list(spec.mean)}, np.float32)) / np.array({list(spec.std)}, np.float32)")
    lines.append("    x = x.transpose(2, 0, 1)[None]" if spec.layout.value == "NCHW" else "    x = x[None]")
    lines.append("    return np.ascontiguousarray(x)")
    return lines


_BASE_IMPORTS = ["import numpy as np", "from PIL import Image"]


def _run_code(manifest: Dict[str, Any], cfg: Dict[str, Any]) -> Optional[Dict[str, List[str]]]:
    """Imports, loading, and the line computing ``scores`` for ``x``: the target's own snippet; None
    for an uncompiled build kit."""
    if not manifest["artifact"]["compiled"]:
        return None
    x = "x" if cfg["input"]["dtype"] == "float32" else f'x.astype("{cfg["input"]["dtype"]}")'
    return get_target(manifest["target"]).usage_code(manifest, cfg["input"]["name"], x)


def _usage_section(manifest: Dict[str, Any], spec: InputSpec, cfg: Dict[str, Any]) -> List[str]:
    run = _run_code(manifest, cfg)
    a = manifest["artifact"]
    if run is None:
        return [f"This is a build kit for {a['compiler']}: compile it on a machine with the vendor's SDK, "
                "in the folder holding these files:", "", "```sh", *a.get("commands", []), "```", "",
                "Feed the compiled model this preprocessing (also in `config.json`):", "",
                "```python", *_BASE_IMPORTS, "", "", *_preprocess_code(spec), "```"]
    o = manifest["onnx"]
    code = ["import json", "", *_BASE_IMPORTS, *run["imports"], "", "", *_preprocess_code(spec), "", "", *run["load"],
            'x = preprocess("image.jpg")']
    if not o["dynamic_batch"] and int(o["batch"]) > 1:
        code.append(f"x = np.repeat(x, {int(o['batch'])}, axis=0)  # the model takes a batch of exactly {o['batch']}")
    code += run["score"]
    if cfg["output"]["semantics"] == "logits":
        code.append("probs = np.exp(scores - scores.max()); probs /= probs.sum()")
    else:
        code.append("probs = scores  # the model ends in a softmax")
    code += ['labels = json.load(open("config.json"))["id2label"]',
             "for i in np.argsort(-probs)[:5]:",
             "    print(labels[str(i)], float(probs[i]))"]
    return ["```python", *code, "```"]


def model_card(manifest: Dict[str, Any], reg: Registry, variant: Variant, weights: Weights, repo_id: str,
               cfg: Dict[str, Any]) -> str:
    """README.md: Hub front matter, then what the model is, where it came from, how it was built and checked,
    and how to run it."""
    spec = effective_input(variant, weights)
    meta = front_matter(manifest, reg, weights, repo_id)
    banners = _banners(manifest)
    title = (f"# {variant.name}: {manifest['source']} `{manifest['tag']}` as {manifest['target']} "
             f"{manifest['precision']}")
    body = [
        *banners, *([""] if banners else []), title, "",
        f"{variant.description or variant.name}: an image classifier over the {variant.arch.num_classes} "
        f"ImageNet-1k classes, converted from the {manifest['source']} checkpoint `{manifest['tag']}` to "
        f"{manifest['target']} {manifest['precision']} by resnext-zoo. It takes a {spec.size}x{spec.size} "
        f"{spec.color.value} image and returns {cfg['output']['semantics']}.",
        "", "## Files", "", *_files_table(manifest),
        "", "## Weights", "", *_weights_section(manifest, reg, weights),
        "", "## Conversion", "", *_conversion_section(manifest, spec, cfg),
        "", "## Validation", "", *_validation_section(manifest),
        "", "## Published results for this checkpoint", "", *_published_section(reg, weights),
        "", "## Speed", "", *_speed_section(manifest, variant),
        "", "## Preprocessing", "", *[f"{i}. {s}" for i, s in enumerate(cfg["preprocessing"]["steps"], 1)],
        "", f"mean {list(spec.mean)}, std {list(spec.std)}; `config.json` holds the same values and the "
            f"{len(cfg['id2label'])} labels.",
        "", "## How to run", "", *_usage_section(manifest, spec, cfg),
    ]
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return "---\n" + front + "---\n\n" + "\n".join(body) + "\n"


def config_bytes(cfg: Dict[str, Any]) -> bytes:
    return (json.dumps(cfg, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
