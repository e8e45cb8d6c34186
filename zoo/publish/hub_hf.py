"""The Hugging Face Hub (``hub=hf``), through huggingface_hub's commit API.

One publish: ``create_repo(exist_ok=True)``; ``get_paths_info`` for every planned path, compared with the
local sha256 (an LFS file's ``lfs.sha256``, a regular file's git blob id); one ``create_commit`` holding
only the files that differ (none: no commit); optionally ``create_tag``. A commit is all-or-nothing on the
Hub: uploads that fail before it leave the branch as it was.

Retries: huggingface_hub already retries its own ``http_backoff`` calls (preupload, LFS batch, LFS PUT and
verify: 5 tries on 408/429/5xx and transport errors). Paths-info, create_repo, the commit POST and the tag
are single requests there, so each step here is retried with tenacity on a transient failure (HTTP
408/429/5xx, a reset or timed-out connection). The commit step is re-planned on every attempt: if a commit
landed but its response was lost, the next attempt finds every file unchanged and commits nothing, so a
retry never makes a duplicate commit.

The token is never handled here: huggingface_hub reads ``HF_TOKEN`` or its saved login. It is only read to
say that none is set and to scrub it from any error text before that text is shown.
"""
from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

from zoo.errors import UserError
from zoo.publish import FileAction, PlannedFile, PublishResult, git_blob_sha1

T = TypeVar("T")
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)


class HubError(UserError):
    """The Hub refused or failed a request (after retries): one line, exit 1."""

    exit_code = 1


def _token() -> Optional[str]:
    from huggingface_hub import get_token

    return get_token()


def redact(text: str) -> str:
    token = _token()
    return text.replace(token, "***") if token else text


def _one_line(exc: BaseException) -> str:
    def first(e: BaseException) -> str:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        return lines[0] if lines else type(e).__name__

    text = first(exc)
    if exc.__cause__ is not None and first(exc.__cause__) not in text:
        text += f": {first(exc.__cause__)}"  # e.g. the upload error behind "Error while uploading ..."
    return redact(text)


def _status(exc: BaseException) -> Optional[int]:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def is_transient(exc: BaseException) -> bool:
    """HTTP 408/429/5xx or a transport failure, anywhere in the exception's chain."""
    import httpx2

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _status(exc) in TRANSIENT_STATUS:
            return True
        if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class HfHub:
    def __init__(self, repo_id: str, options: Dict[str, Any], progress: bool = True) -> None:
        self.repo_id = repo_id
        self.private = options.get("private")
        self.attempts = max(1, int(options.get("retries", 5)))
        self.wait_s = float(options.get("retry_wait_s", 2.0))
        self.progress = progress

    @property
    def where(self) -> str:
        return f"hf:{self.repo_id}"

    def dry_run(self, files: List[PlannedFile]) -> List[FileAction]:
        """Every file as ``add*``: reading the Hub would be a request, and a dry run makes none."""
        return [FileAction(f.path, f.size, f.sha256, "add*") for f in files]

    def publish(self, files: List[PlannedFile], message: str, description: str, manifest_sha256: str,
                tag: Optional[str]) -> PublishResult:
        if not _token():
            raise UserError("no Hugging Face token: set HF_TOKEN or log in with `hf auth login`")
        from huggingface_hub import HfApi
        from huggingface_hub.utils import disable_progress_bars

        from zoo.build.request import ZOO_VERSION

        if not self.progress:
            disable_progress_bars()
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per request otherwise
        api = HfApi(library_name="resnext-zoo", library_version=ZOO_VERSION)
        with _hub_errors(self.repo_id):
            self._retry("create repo", lambda: api.create_repo(self.repo_id, repo_type="model", exist_ok=True,
                                                               private=self.private))
            actions, commit = self._retry("commit", lambda: self._commit(api, files, message, description))
            tag_state = self._retry("tag", lambda: self._tag(api, tag, commit, files, message)) if tag else None
        return PublishResult(where=self.where, actions=actions, commit=commit, tag=tag, tag_state=tag_state,
                             url=f"{api.endpoint}/{self.repo_id}")

    def remote_actions(self, api, files: List[PlannedFile], revision: Optional[str] = None) -> List[FileAction]:
        """add / update / skip per file, from the Hub's record of each path."""
        infos = api.get_paths_info(self.repo_id, [f.path for f in files], revision=revision, repo_type="model")
        remote = {i.path: i for i in infos if hasattr(i, "blob_id")}
        out = []
        for f in files:
            info = remote.get(f.path)
            if info is None:
                action = "add"
            elif info.lfs is not None:
                action = "skip" if info.lfs.sha256 == f.sha256 else "update"
            else:
                action = "skip" if info.size == f.size and info.blob_id == git_blob_sha1(f) else "update"
            out.append(FileAction(f.path, f.size, f.sha256, action))
        return out

    def _commit(self, api, files: List[PlannedFile], message: str,
                description: str) -> Tuple[List[FileAction], Optional[str]]:
        from huggingface_hub import CommitOperationAdd

        actions = self.remote_actions(api, files)
        changed = [f for f, a in zip(files, actions) if a.action != "skip"]
        if not changed:
            return actions, None
        ops = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=f.content if f.generated else str(f.content))
               for f in changed]
        info = api.create_commit(self.repo_id, operations=ops, commit_message=message,
                                 commit_description=description, repo_type="model")
        return actions, info.oid

    def _tag(self, api, tag: str, commit: Optional[str], files: List[PlannedFile], message: str) -> str:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            api.create_tag(self.repo_id, tag=tag, revision=commit, tag_message=message, repo_type="model")
            return "created"
        except HfHubHTTPError as e:
            if _status(e) != 409:
                raise
        if all(a.action == "skip" for a in self.remote_actions(api, files, revision=tag)):
            return "exists with the same files"
        raise UserError(f"tag '{tag}' already exists on {self.repo_id} with other files; tags are immutable: "
                        "choose a new hub.revision_tag")

    def _retry(self, step: str, fn: Callable[[], T]) -> T:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

        def say(state) -> None:
            exc = state.outcome.exception()
            print(f"[zoo] {step}: transient failure ({_one_line(exc)}); attempt {state.attempt_number + 1} "
                  f"of {self.attempts} in {state.next_action.sleep:.1f} s", file=sys.stderr, flush=True)

        retrying = Retrying(stop=stop_after_attempt(self.attempts), reraise=True,
                            wait=wait_exponential(multiplier=self.wait_s, max=60),
                            retry=retry_if_exception(is_transient), before_sleep=say)
        return retrying(fn)


@contextmanager
def _hub_errors(repo_id: str) -> Iterator[None]:
    """What the Hub or the connection said, as one line without the token; user errors pass through."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except UserError:
        raise
    except HfHubHTTPError as e:
        status = _status(e)
        hint = ""
        if status in (401, 403):
            hint = f"; check that the token (HF_TOKEN or `hf auth login`) may write to {repo_id.split('/')[0]}"
        raise HubError(f"hf {repo_id}: {_one_line(e)}{hint}") from None
    except (httpx2.HTTPError, OSError, RuntimeError, ValueError) as e:
        raise HubError(f"hf {repo_id}: {type(e).__name__}: {_one_line(e)}") from None
