"""The checkpoint a conversion loads: downloaded and verified, the user's own file, or a fresh init."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from zoo.build.request import ConvertRequest
from zoo.build.source_checks import fp32_bytes
from zoo.converters.stages import StageMeter, release_memory
from zoo.store import sha256_of


def resolve_checkpoint(req: ConvertRequest, adapter: Any, workdir: Path, timer: StageMeter) -> Tuple[Path, Dict[str, Any]]:
    """The checkpoint file to load, and how it was obtained (for the manifest)."""
    w = req.weights
    if req.weights_mode == "file":
        return req.weights_file, {"mode": "file", "path": str(req.weights_file), "sha256": sha256_of(req.weights_file)}
    if req.weights_mode == "random":
        # A fresh init saved in the source's own format, then loaded back like any checkpoint:
        # the dry run exercises the real loading path.
        with timer("init"):
            model = adapter.fresh(req.variant, w, req.seed)
            path = workdir / f"random-seed{req.seed}{adapter.checkpoint_suffix}"
            adapter.save_checkpoint(model, path)
            del model
            release_memory(fp32_bytes(req))
        return path, {"mode": "random", "seed": req.seed, "sha256": sha256_of(path),
                      "note": "freshly initialised weights; accuracy checks do not apply"}
    from zoo.fetch import fetch, request_for, retry_policy

    # Where the bytes came from (network or mirror) is not part of weights_identity: they are verified by hash.
    with timer("fetch"):
        got = fetch(request_for(w, req.variant), cache_dir=req.cache_dir, offline=req.offline, progress=req.progress,
                    mirror=req.mirror, retry=retry_policy(req.download_timeout), store_endpoint=req.store_endpoint)
    info = {"mode": "pretrained", "origin": got.origin, "sha256": got.sha256, "size": got.size,
            "cache_hit": got.cache_hit}
    if got.mirror is not None:
        info["mirror"] = str(got.mirror)
    return got.path, info
