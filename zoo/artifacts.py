"""Open a built artifact from its folder and manifest: the runner any later check (accuracy, golden
outputs) uses, on this machine or on another one the folder was copied to."""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

from zoo.converters.spec import OnnxSpec
from zoo.errors import Unavailable, UserError
from zoo.registry.loader import load_registry
from zoo.registry.query import effective_input, resolve_variant, select_weights
from zoo.store import MANIFEST, read_manifest, sha256_of
from zoo.targets import get_target, target_classes
from zoo.targets.base import Built, Runner, TargetJob


def require_manifest(folder: Path, convert_hint: str) -> Dict[str, Any]:
    m = read_manifest(folder)
    if m is None:
        raise Unavailable(f"no artifact at {folder}; build it first: {convert_hint}")
    return m


@contextmanager
def open_artifact(folder: Path, manifest: Dict[str, Any], verify: bool = True) -> Iterator[Tuple[Runner, TargetJob]]:
    """A runner over the artifact in ``folder`` (files verified against the manifest's hashes first)."""
    files = manifest["artifact"]["files"]
    if verify:
        for f in files:
            path = folder / f["name"]
            if not path.is_file() or sha256_of(path) != f["sha256"]:
                raise UserError(f"{path} is missing or differs from {folder / MANIFEST}; rebuild with force=true")
    reg = load_registry()
    variant = resolve_variant(reg, manifest["variant"])
    weights = select_weights(reg, variant, manifest["source"], manifest["tag"])
    target = get_target(manifest["target"])
    work = Path(tempfile.mkdtemp(prefix="zoo-run-"))
    try:
        job = TargetJob(variant=variant, weights=weights, input=effective_input(variant, weights),
                        precision=manifest["precision"], options=manifest.get("options", {}),
                        onnx_path=folder / manifest["artifact"]["primary"], spec=OnnxSpec(**manifest["onnx"]),
                        stage=folder, work=work, seed=0, progress=False)
        built = Built(files=[folder / f["name"] for f in files], primary=folder / manifest["artifact"]["primary"],
                      compiled=manifest["artifact"]["compiled"], compiler=manifest["artifact"]["compiler"],
                      info=dict(manifest["artifact"].get("info", {})))
        runner = target.load(job, built) if built.compiled else None
        if runner is None:
            runnable = [name for name, cls in target_classes().items() if cls.has_runtime]
            raise UserError(f"{manifest['target']} {manifest['precision']} artifacts have no runtime on this machine "
                            f"({manifest['artifact']['compiler']}); validate {', '.join(runnable)} artifacts here")
        yield runner, job
    finally:
        shutil.rmtree(work, ignore_errors=True)
