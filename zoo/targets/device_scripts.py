"""The VACC and BPU kits' device-side scripts: ``device_eval.py`` (top-1/top-5 or FPS through the vendor's
runtime: vaststreamx or hbm_runtime), ``infer_accuracy.sh`` and ``infer_performance.sh`` around it, and
``preprocess.json`` (the registry's preprocessing and the figures the vendor published, printed beside
what is measured). ``BACKEND=onnx MODEL=<the kit's .onnx>`` runs ONNX Runtime in place of the device:
how the kits are checked here.
"""
from __future__ import annotations

import json
import py_compile
import shlex
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Sequence

from zoo.targets.base import Check, TargetJob

EVAL_SOURCE = Path(__file__).with_name("device_eval.py")
EVAL = "device_eval.py"
PREPROCESS = "preprocess.json"
SCRIPTS = {"accuracy": "infer_accuracy.sh", "performance": "infer_performance.sh"}


def preprocess_json(job: TargetJob, target: str) -> Dict[str, Any]:
    """The registry's preprocessing of (variant, weights) and the published figures: top-1 of the checkpoint,
    and the vendors' speed on ``target``'s hardware."""
    i = job.input
    published = [{"top1": p.top1, "top5": p.top5, "published_in": f"{p.provenance.doc}: {p.provenance.table}"}
                 for p in job.weights.published if p.top1 is not None]
    fps = [{"fps": d.fps, "batch": d.batch, "precision": d.precision, "device": d.device,
            "published_in": f"{d.provenance.doc}: {d.provenance.table}"}
           for d in job.variant.deployments if d.target == target and d.fps is not None]
    return {"model": job.variant.name, "source": job.weights.source, "tag": job.weights.tag,
            "precision": job.precision,
            "input": {"size": i.size, "resize": i.resize_short(), "interpolation": i.interpolation.value,
                      "mean": list(i.mean), "std": list(i.std), "color": i.color.value},
            "published_top1": published, "published_fps": fps}


def _script(mode: str, backend: str, model: str, extra: Sequence[str]) -> str:
    test_mode = "ACC" if mode == "accuracy" else "FPS"
    args = " ".join(shlex.quote(a) if not a.startswith("$") else f'"{a}"' for a in extra)
    return "\n".join([
        "#!/bin/bash",
        f"# {mode} of the compiled model on the device ({backend}), for this kit.",
        "# DATASETS_DIR: an ImageFolder root with val_map.txt (<image file name><TAB><label>).",
        "# BACKEND=onnx MODEL=<the kit's .onnx> runs ONNX Runtime in place of the device (how the kit was checked).",
        "set -euo pipefail",
        'KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        ': "${DATASETS_DIR:?set DATASETS_DIR to an ImageFolder root with val_map.txt}"',
        f'BACKEND="${{BACKEND:-{backend}}}"',
        f'MODEL="${{MODEL:-$KIT/{model}}}"',
        f'python3 "$KIT/{EVAL}" --backend "$BACKEND" --like {backend} --model "$MODEL" --datasets_dir "$DATASETS_DIR" '
        f'--test_mode {test_mode} {args} "$@"'.replace("  ", " "),
        "",
    ])


def write_device_scripts(job: TargetJob, target: str, backend: str, model: str, extra: Sequence[str]) -> List[Path]:
    """device_eval.py, preprocess.json and the two scripts, in the kit (``job.stage``); ``model`` is the
    compiled model's path in the kit once the vendor's compiler has run, ``extra`` the backend's arguments."""
    kit = job.stage
    (kit / EVAL).write_bytes(EVAL_SOURCE.read_bytes())
    (kit / PREPROCESS).write_text(json.dumps(preprocess_json(job, target), indent=2) + "\n")
    out = [kit / EVAL, kit / PREPROCESS]
    for mode, name in SCRIPTS.items():
        (kit / name).write_text(_script(mode, backend, model, extra))
        (kit / name).chmod(0o755)
        out.append(kit / name)
    return out


def script_checks(files: Sequence[Path]) -> List[Check]:
    """bash -n on the shell scripts, py_compile on the Python ones (into a throw-away file: the kit stays clean)."""
    checks = []
    for path in files:
        if path.suffix == ".sh":
            proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            checks.append(Check(f"{path.name} parses (bash -n)", proc.returncode == 0, proc.stderr.strip()[-300:]))
        elif path.suffix == ".py":
            scratch = path.with_name(f".{path.name}.pyc.check")
            try:
                py_compile.compile(str(path), cfile=str(scratch), doraise=True)
                ok, detail = True, "compiles"
            except py_compile.PyCompileError as e:
                ok, detail = False, str(e)[-300:]
            finally:
                scratch.unlink(missing_ok=True)
            checks.append(Check(f"{path.name} compiles", ok, detail))
    return checks


def readme_lines(runtime: str, onnx_name: str) -> List[str]:
    return [
        "## On the device: accuracy and speed",
        "",
        f"    DATASETS_DIR=/data/imagenet_val bash {SCRIPTS['accuracy']}     # top-1 / top-5 ({runtime}), beside the published figure",
        f"    DATASETS_DIR=/data/imagenet_val bash {SCRIPTS['performance']}  # images per second after warm-up, one image per call",
        "",
        "`DATASETS_DIR` is an ImageFolder root with `val_map.txt` (`<image file name><TAB><label>` per line).",
        f"What ran here: `bash -n` and `py_compile` on these scripts, and (in the project's tests) both scripts end "
        f"to end with ONNX Runtime on `{onnx_name}` in place of the device (`BACKEND=onnx MODEL={onnx_name}`). "
        f"{runtime} and the device did not run here.",
    ]
