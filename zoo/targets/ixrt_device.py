"""The ixRT kit's device-side scripts, in DeepSparkInference's shape: ``inference.py`` (top-1/top-5 or
FPS), ``infer_<model>_<precision>_accuracy.sh`` and ``..._performance.sh`` (build the engine if it is not
there, then run it), and ``preprocess.json`` (the registry's preprocessing and the published figures the
scripts print beside what they measure).

Here they are checked with ``bash -n`` and ``py_compile``; the tests also run them end to end with
ONNX Runtime on the kit's static ONNX in place of the engine (``ENGINE_FILE=<model>_<batch>.onnx``).
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Dict, List

from zoo.targets.base import TargetJob
from zoo.targets.device_scripts import preprocess_json

INFERENCE_SOURCE = Path(__file__).with_name("ixrt_inference.py")
INFERENCE = "inference.py"
PREPROCESS = "preprocess.json"


def script_names(model: str, precision: str) -> Dict[str, str]:
    engine_precision = "fp16" if precision == "fp16" else "int8"
    return {mode: f"infer_{model}_{engine_precision}_{mode}.sh" for mode in ("accuracy", "performance")}


def _script(mode: str, config: str, engine: str, build_input: str, precision: str, batch: int) -> str:
    test_mode = "ACC" if mode == "accuracy" else "FPS"
    return "\n".join([
        "#!/bin/bash",
        f"# {mode} of the ixRT engine on the Iluvatar device (DeepSparkInference's infer_*_{mode}.sh, for this kit).",
        "# DATASETS_DIR: an ImageFolder root with val_map.txt. CHECKPOINTS_DIR and CONFIG_DIR default to this kit.",
        "# ENGINE_FILE=<model>_<batch>.onnx runs ONNX Runtime instead of the engine (how the kit was checked).",
        "set -euo pipefail",
        'KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        ': "${DATASETS_DIR:?set DATASETS_DIR to an ImageFolder root with val_map.txt}"',
        'CHECKPOINTS_DIR="${CHECKPOINTS_DIR:-$KIT}"',
        f'CONFIG_DIR="${{CONFIG_DIR:-$KIT/{config}}}"',
        'source "$CONFIG_DIR"',
        f'ENGINE_FILE="${{ENGINE_FILE:-$CHECKPOINTS_DIR/{engine}}}"',
        'if [[ "$ENGINE_FILE" == *.engine && ! -f "$ENGINE_FILE" ]]; then',
        f'    python3 "$KIT/build_engine.py" --onnx "$CHECKPOINTS_DIR/{build_input}" --engine "$ENGINE_FILE" '
        f'--precision {shlex.quote(precision)}',
        "fi",
        f'python3 "$KIT/{INFERENCE}" --engine_file "$ENGINE_FILE" --datasets_dir "$DATASETS_DIR" '
        f'--test_mode {test_mode} --bsz {batch} "$@"',
        "",
    ])


def write_device_scripts(job: TargetJob, kit: Path, config: str, engine: str, build_input: str,
                         batch: int) -> List[Path]:
    """The scripts and preprocess.json, in ``kit``; returns the files written."""
    (kit / INFERENCE).write_bytes(INFERENCE_SOURCE.read_bytes())
    (kit / PREPROCESS).write_text(json.dumps(preprocess_json(job, "ixrt"), indent=2) + "\n")
    out = [kit / INFERENCE, kit / PREPROCESS]
    for mode, name in script_names(job.variant.name, job.precision).items():
        path = kit / name
        path.write_text(_script(mode, config, engine, build_input, job.precision, batch))
        path.chmod(0o755)
        out.append(path)
    return out


def readme_lines(job: TargetJob, batch: int) -> List[str]:
    names = script_names(job.variant.name, job.precision)
    return [
        "On the device (the engine is built first if it is not there):",
        "",
        f"    DATASETS_DIR=/data/imagenet_val bash {names['accuracy']}     # top-1 / top-5, printed beside the published figure",
        f"    DATASETS_DIR=/data/imagenet_val bash {names['performance']}  # FPS at batch {batch}, after warm-up",
        "",
        "What ran here: `bash -n` and `py_compile` on these scripts, and (in the project's tests) both scripts "
        "end to end with ONNX Runtime on the kit's static ONNX in place of the engine (ENGINE_FILE=...onnx). "
        "The engine itself, ixRT and cuda-python did not run here.",
    ]
