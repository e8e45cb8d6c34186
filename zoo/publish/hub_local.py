"""A hub in a folder (``hub=local hub.root=DIR``): the repository layout the Hub would hold, on disk.

``<root>/<org>/<name>/`` holds the repository's files, plus ``.zoo-publish.json``: the log of its commits
(message, manifest sha256, the sha256 of every file after the commit, which files it wrote) and its tags,
each naming a commit. Files are compared with the published ones by sha256; when none differs and no tag is
asked for, nothing on disk is touched. A commit is staged in a sibling folder (unchanged files hard-linked,
changed ones copied in) and swapped in with renames under a lock, so a reader sees the previous complete
repository or the new one. Tags are immutable: asking again for an existing tag succeeds only when it
names the same files.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from zoo.errors import UserError
from zoo.publish import PUBLISH_LOG, FileAction, PlannedFile, PublishResult
from zoo.store import link_or_copy, sha256_of, staged, write_json


class LocalHub:
    def __init__(self, root: Path, repo_id: str) -> None:
        self.repo_id = repo_id
        self.folder = Path(root).expanduser().resolve() / repo_id

    @property
    def where(self) -> str:
        return f"local:{self.folder}"

    def log(self) -> Dict[str, Any]:
        try:
            return json.loads((self.folder / PUBLISH_LOG).read_text())
        except FileNotFoundError:
            return {"repo": self.repo_id, "head": None, "commits": [], "tags": {}}
        except ValueError:
            raise UserError(f"{self.folder / PUBLISH_LOG} is not valid JSON; repair or remove it") from None

    def plan(self, files: List[PlannedFile]) -> List[FileAction]:
        """add / update / skip for each file, from the sha256 of what the mirror holds now (no network)."""
        out = []
        for f in files:
            p = self.folder / f.path
            if not p.is_file():
                action = "add"
            elif p.stat().st_size == f.size and sha256_of(p) == f.sha256:
                action = "skip"
            else:
                action = "update"
            out.append(FileAction(f.path, f.size, f.sha256, action))
        return out

    def dry_run(self, files: List[PlannedFile]) -> List[FileAction]:
        return self.plan(files)

    def publish(self, files: List[PlannedFile], message: str, description: str, manifest_sha256: str,
                tag: Optional[str]) -> PublishResult:
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.folder.parent / f".{self.folder.name}.lock"):
            actions = self.plan(files)
            changed = [f for f, a in zip(files, actions) if a.action != "skip"]
            log = self.log()
            commit = None
            if changed:
                commit = self._record_commit(log, files, changed, message, description, manifest_sha256)
            tag_state = self._record_tag(log, tag, files) if tag else None
            if changed or tag_state == "created":
                self._write(changed, log)
        return PublishResult(where=self.where, actions=actions, commit=commit, tag=tag, tag_state=tag_state,
                             url=str(self.folder))

    def _record_commit(self, log: Dict[str, Any], files: List[PlannedFile], changed: List[PlannedFile],
                       message: str, description: str, manifest_sha256: str) -> str:
        previous = _commit(log, log["head"])
        state = dict(previous["files"]) if previous else {}
        state.update({f.path: f.sha256 for f in files})
        blob = json.dumps({"parent": log["head"], "files": state, "message": message}, sort_keys=True)
        commit_id = hashlib.sha1(blob.encode()).hexdigest()
        log["commits"].append({
            "id": commit_id, "parent": log["head"], "message": message, "description": description,
            "manifest_sha256": manifest_sha256, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "wrote": [f.path for f in changed], "files": state,
        })
        log["head"] = commit_id
        return commit_id

    def _record_tag(self, log: Dict[str, Any], tag: str, files: List[PlannedFile]) -> str:
        existing = log["tags"].get(tag)
        if existing is None:
            log["tags"][tag] = log["head"]
            return "created"
        tagged = (_commit(log, existing) or {}).get("files", {})
        if all(tagged.get(f.path) == f.sha256 for f in files):
            return "exists with the same files"
        raise UserError(f"tag '{tag}' already exists in {self.folder} on other files; tags are immutable: "
                        "choose a new hub.revision_tag")

    def _write(self, changed: List[PlannedFile], log: Dict[str, Any]) -> None:
        """Stage the new repository state beside the old one and swap it in."""
        with staged(self.folder) as stage:
            if self.folder.is_dir():
                _link_tree(self.folder, stage)
            for f in changed:
                dst = stage / f.path
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists():
                    dst.unlink()  # a hard link to the published file: never write through it
                if isinstance(f.content, bytes):
                    dst.write_bytes(f.content)
                else:
                    shutil.copyfile(f.content, dst)
            write_json(stage / PUBLISH_LOG, log)


def _commit(log: Dict[str, Any], commit_id: Optional[str]) -> Optional[Dict[str, Any]]:
    return next((c for c in log["commits"] if c["id"] == commit_id), None)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (copy where the filesystem cannot link)."""
    for p in sorted(src.rglob("*")):
        if not p.is_file() or p.name == PUBLISH_LOG and p.parent == src:
            continue
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(p, target)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One publisher at a time per repository folder."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
