"""`zoo publish`: a built, validated artifact to a model hub, with a generated config.json and model card.

python -m zoo publish model=resnext50_32x4d source=torchvision target=onnx hub=hf hub.repo=org/name
python -m zoo publish model=resnext50_32x4d target=onnx hub=local hub.root=DIR hub.org=ORG dry_run=true
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import DictConfig, OmegaConf

from zoo.calibration import is_generated
from zoo.errors import SweepError, UserError
from zoo.publish import (
    GENERATED, PUBLISH_LOG, FileAction, PlannedFile, PublishResult, check_repo_id, derived_repo_id, planned_bytes,
)
from zoo.status import KIT, checks_passed
from zoo.store import MANIFEST, sha256_of

USAGE = ("publish needs a hub: hub=hf hub.repo=org/name (or hub.org=ORG), "
         "or hub=local hub.root=DIR hub.repo=org/name (or hub.org=ORG)")


def _artifact(cfg: DictConfig):
    """The request the artifact was built from, its folder and its manifest."""
    from zoo.artifacts import require_manifest
    from zoo.build.from_config import build_request
    from zoo.build.request import artifact_folder_name
    from zoo.store import artifact_dir

    req = build_request(cfg)
    if req.store_url:  # object storage: this machine's copy of the artifact, downloaded
        from zoo.remote.artifacts import pull

        pull(req)
    folder = artifact_dir(req.out_root, req.variant.name, req.weights.source, req.weights.tag,
                          artifact_folder_name(req.target, req.precision))
    hint = (f"python -m zoo convert model={req.variant.name} source={req.weights.source} tag={req.weights.tag} "
            f"target={req.target} precision={req.precision} out_dir={cfg.out_dir}")
    return req, folder, require_manifest(folder, hint)


def check_publishable(folder: Path, manifest: Dict[str, Any], force: bool) -> None:
    """Only a passed build, with every file as its manifest recorded it, goes out; an int8 one only when
    calibrated on real data (force: a failed or generated-calibration one too)."""
    from zoo.publish.card import failed_checks

    if not checks_passed(str(manifest.get("status"))) and not force:
        failed = ", ".join(failed_checks(manifest)) or "see the manifest"
        raise UserError(f"the artifact at {folder} failed validation ({failed}); only passed artifacts are "
                        "published (force=true publishes it, marked FAILED on its card)")
    if is_generated(manifest.get("calibration")) and not force:
        # it passed its checks, but against ranges from generated images: nobody knows its int8 accuracy
        raise UserError(f"the int8 artifact at {folder} was calibrated on generated images, not real data, so its "
                        "int8 accuracy is unknown: rebuild with calib_data=DIR (a folder of real images), or publish "
                        "anyway with force=true (its card then says so at the top)")
    for f in manifest["artifact"]["files"]:
        path = folder / f["name"]
        if not path.is_file() or path.stat().st_size != f["size"] or sha256_of(path) != f["sha256"]:
            raise UserError(f"{path} is missing or differs from {folder / MANIFEST}; rebuild with force=true")
        if f["name"] in (MANIFEST, PUBLISH_LOG, *GENERATED):
            raise UserError(f"the artifact has a file named {f['name']}, which the publish writes itself")


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def repo_id_for(hub: DictConfig, manifest: Dict[str, Any]) -> str:
    if hub.get("repo"):
        if _multirun():
            raise SweepError("a sweep publishes one repo per artifact: give hub.org=ORG instead of hub.repo")
        return check_repo_id(str(hub.repo))
    if hub.get("org"):
        return derived_repo_id(str(hub.org), manifest)
    raise UserError("say where to publish: hub.repo=org/name, or hub.org=ORG for "
                    "ORG/<variant>-<source>-<tag>-<target>[-<precision>]")


def planned_files(folder: Path, manifest: Dict[str, Any], req, repo_id: str) -> List[PlannedFile]:
    """The artifact's files, the public manifest.json, then the generated config.json and README.md.

    What goes out is built from the public manifest (local paths reduced to file names, see
    ``zoo.publish.public``); the local manifest only says which files to send and what they hash to."""
    from zoo.publish.card import config_bytes, config_json, input_dtype, model_card
    from zoo.publish.public import manifest_bytes, public_manifest
    from zoo.registry.loader import load_registry

    files = [PlannedFile(f["name"], folder / f["name"], f["size"], f["sha256"]) for f in manifest["artifact"]["files"]]
    public = public_manifest(manifest)
    files.append(planned_bytes(MANIFEST, manifest_bytes(public)))
    cfg = config_json(public, req.variant, req.weights, input_dtype(folder, manifest))
    files.append(planned_bytes("config.json", config_bytes(cfg)))
    card = model_card(public, load_registry(), req.variant, req.weights, repo_id, cfg)
    files.append(planned_bytes("README.md", card.encode("utf-8")))
    return files


def commit_text(manifest: Dict[str, Any], manifest_sha256: str, files: List[PlannedFile],
                local_sha256: str | None = None) -> tuple[str, str]:
    """The commit names the sha256 of the manifest.json it publishes (the public copy, which anyone can check
    against the repository); the build's own manifest, when its paths made it differ, is named in the body."""
    m = manifest
    message = (f"Publish {m['variant']} {m['source']}/{m['tag']} {m['target']} {m['precision']} "
               f"(manifest sha256 {manifest_sha256})")
    local = ([f"local manifest.json sha256: {local_sha256} (published with local paths reduced to file names)"]
             if local_sha256 and local_sha256 != manifest_sha256 else [])
    description = "\n".join([
        f"manifest.json sha256: {manifest_sha256}", *local,
        f"status: {m['status']}; weights: {m['weights']['mode']}, sha256 {m['weights']['sha256']}",
        f"built by resnext-zoo {m.get('zoo_version', '?')} with {m['artifact']['compiler']}",
        "files:", *[f"  {f.path}  {f.size}  sha256 {f.sha256}" for f in files],
    ])
    return message, description


def make_hub(hub: DictConfig, repo_id: str, progress: bool):
    name = str(hub.name)
    if name == "local":
        if not hub.get("root"):
            raise UserError("hub=local needs hub.root=DIR: the folder the mirror lives in")
        from zoo.publish.hub_local import LocalHub

        return LocalHub(Path(str(hub.root)), repo_id)
    if name == "hf":
        from zoo.publish.hub_hf import HfHub

        return HfHub(repo_id, OmegaConf.to_container(hub, resolve=True), progress)
    raise UserError(f"unknown hub '{name}': use hub=hf or hub=local")


def _heading(manifest: Dict[str, Any]) -> str:
    m = manifest
    return f"{m['variant']}  {m['source']}/{m['tag']} -> {m['target']} {m['precision']}"


def _file_lines(actions: List[FileAction]) -> List[str]:
    width = max(len(a.path) for a in actions)
    return [f"  {a.action:<7} {a.path:<{width}}  {a.size:>12,} B  sha256 {a.sha256}" for a in actions]


def dry_run_report(manifest: Dict[str, Any], where: str, message: str, actions: List[FileAction],
                   tag: str | None) -> str:
    lines = [f"{_heading(manifest)}   dry run for {where}: nothing is sent or written",
             f"  commit  \"{message}\"", *_file_lines(actions)]
    if tag:
        lines.append(f"  tag     {tag} (created on the commit unless it exists with the same files)")
    if any(a.action == "add*" for a in actions):
        lines.append("  * the Hub is not read in a dry run (no network request); at publish time files it "
                     "already holds with the same sha256 are skipped")
    elif all(a.action == "skip" for a in actions):
        lines.append("  every file is already published: nothing would be committed")
    lines += _kit_note(manifest)
    return "\n".join(lines) + "\n"


def publish_report(manifest: Dict[str, Any], result: PublishResult) -> str:
    sent = [a for a in result.actions if a.action != "skip"]
    lines = [f"{_heading(manifest)}   published to {result.where}" if sent
             else f"{_heading(manifest)}   unchanged on {result.where}: every file already published",
             *_file_lines(result.actions)]
    if result.commit:
        unchanged = len(result.actions) - len(sent)
        lines.append(f"  commit  {result.commit}  ({len(sent)} file(s) sent, {unchanged} unchanged)")
    else:
        lines.append("  commit  none (nothing differed)")
    if result.tag:
        lines.append(f"  tag     {result.tag}: {result.tag_state}")
    if result.url:
        lines.append(f"  url     {result.url}")
    lines += _kit_note(manifest)
    return "\n".join(lines) + "\n"


def _kit_note(manifest: Dict[str, Any]) -> List[str]:
    """A kit goes out as what it is: its card opens with the same words."""
    if manifest.get("status") != KIT:
        return []
    return [f"  kit     a build kit: {manifest['artifact']['compiler']} was not run, so no engine was built or "
            "checked; its card says so at the top"]


def run_publish(cfg: DictConfig) -> None:
    hub = cfg.get("hub")
    if hub is None:
        raise UserError(USAGE)
    if cfg.get("model") is None:
        raise UserError("publish needs the artifact's variant: model=resnext50_32x4d [source=timm] target=onnx ...")
    req, folder, manifest = _artifact(cfg)
    check_publishable(folder, manifest, bool(cfg.force))
    repo_id = repo_id_for(hub, manifest)
    dest = make_hub(hub, repo_id, bool(cfg.progress))
    files = planned_files(folder, manifest, req, repo_id)
    manifest_sha256 = files[len(manifest["artifact"]["files"])].sha256  # the published (public) manifest.json
    message, description = commit_text(manifest, manifest_sha256, files, sha256_of(folder / MANIFEST))
    tag = str(hub.revision_tag) if hub.get("revision_tag") else None
    if bool(cfg.get("dry_run", False)):
        sys.stdout.write(dry_run_report(manifest, dest.where, message, dest.dry_run(files), tag))
        return
    result = dest.publish(files, message, description, manifest_sha256, tag)
    sys.stdout.write(publish_report(manifest, result))
