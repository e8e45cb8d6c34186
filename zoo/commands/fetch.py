"""`zoo fetch`: one registry entry's checkpoint into the download cache, verified by sha256.

python -m zoo fetch model=resnext50_32x4d source=timm [tag=a1h_in1k] [offline=true] [format=json]
python -m zoo fetch model=resnext50_32x4d download_timeout=7200   (seconds for the whole download; default 3600)
python -m zoo fetch model=resnext50_32x4d source=torchvision mirror=/srv/mirror      (no network)
python -m zoo fetch model=resnext50_32x4d source=torchvision mirror_out=/srv/mirror  (fill a mirror)

The same fetch `zoo convert` does before it builds, so a later convert of that entry finds its weights in
the cache (offline too).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError
from zoo.remote.location import is_url
from zoo.registry.schema import Variant, Weights


def select_entry(cfg: DictConfig) -> Tuple[Variant, Weights]:
    """The variant (as composed, overrides included) and its (source, tag) weights entry."""
    from zoo.converters.sources import default_source
    from zoo.registry.loader import composed_variant, load_registry
    from zoo.registry.query import resolve_variant, select_weights

    if cfg.get("model") is None:
        raise UserError("fetch needs a variant: python -m zoo fetch model=resnext50_32x4d [source=timm] [tag=...]")
    reg = load_registry()
    resolve_variant(reg, cfg.model.name)
    variant = composed_variant(reg, OmegaConf.to_container(cfg.model, resolve=True))
    source = default_source(variant, cfg.source.name if cfg.get("source") is not None else None)
    return variant, select_weights(reg, variant, source, cfg.get("tag"))


def _folder(cfg: DictConfig, key: str) -> Optional[Path]:
    value = cfg.get(key)
    return Path(str(value)).expanduser() if value else None


def report(variant: Variant, w: Weights, got, registry_digest: str,
           mirror_out: Optional[Tuple[Path, bool]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "variant": variant.name, "source": w.source, "tag": w.tag, "origin": got.origin,
        "from": "cache" if got.cache_hit else ("mirror" if got.mirror is not None else "network"),
        "mirror_file": str(got.mirror) if got.mirror is not None else None,
        "path": str(got.path), "size": got.size, "sha256": got.sha256, "cache_hit": got.cache_hit,
        "registry_digest": registry_digest,
    }
    if mirror_out is not None:
        out["mirror_out"] = {"path": str(mirror_out[0]), "written": mirror_out[1]}
    return out


def render(r: Dict[str, Any]) -> str:
    how = {"cache": "cache hit", "mirror": "read from the mirror", "network": "downloaded"}[r["from"]]
    lines = [f"{r['variant']}  {r['source']}/{r['tag']}   {how}",
             f"  origin     {r['origin']}"]
    if r["mirror_file"]:
        lines.append(f"  mirror     {r['mirror_file']}")
    lines += [f"  path       {r['path']}",
              f"  size       {r['size']:,} B",
              f"  sha256     {r['sha256']}",
              f"  verified   {r['registry_digest']}",
              f"  cache      {'hit' if r['cache_hit'] else 'miss'}"]
    if "mirror_out" in r:
        m = r["mirror_out"]
        lines.append(f"  mirror_out {m['path']}  ({'written' if m['written'] else 'already there'})")
    return "\n".join(lines) + "\n"


def run_fetch(cfg: DictConfig) -> None:
    from zoo.fetch import fetch, request_for, retry_policy, write_to_mirror
    from zoo.fetch._common import Expect

    fmt = str(cfg.get("format", "table"))
    if fmt not in ("table", "json"):
        raise UserError(f"format={fmt}: fetch prints format=table or format=json")
    if str(cfg.get("weights", "pretrained")) != "pretrained":
        raise UserError(f"weights={cfg.weights}: fetch gets the registry's checkpoint; drop weights=")
    policy = retry_policy(cfg.get("download_timeout", 3600))
    variant, w = select_entry(cfg)
    if not (w.hf_hub_id or w.url):
        raise UserError(f"{variant.name} {w.source}/{w.tag} has no download in the registry (no url, no hf_hub_id)")
    req = request_for(w, variant)
    expect = Expect.build(req.sha256, req.sha256_prefix, req.url, where=req.url or str(req.hf_hub_id))
    digest = (f"against the registry's {expect.describe()}" if expect.sha256 or expect.prefix else
              "the registry has no digest: against the Hub's LFS sha256, or a mirror's .sha256 sidecar")
    cache = cfg.get("cache_dir")
    got = fetch(req, cache_dir=str(cache) if is_url(cache) else _folder(cfg, "cache_dir"), offline=bool(cfg.offline),
                progress=bool(cfg.progress), retry=policy, mirror=_folder(cfg, "mirror"),
                store_endpoint=cfg.store.endpoint_url)
    out_dir = _folder(cfg, "mirror_out")
    written = write_to_mirror(got, req, out_dir) if out_dir is not None else None
    r = report(variant, w, got, digest, written)
    sys.stdout.write(json.dumps(r, indent=2) + "\n" if fmt == "json" else render(r))
