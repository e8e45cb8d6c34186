"""Plain HTTP(S) downloads: streamed, resumed with Range requests, retried with back-off."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from zoo.fetch._common import one_line

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Tests shrink the back-off; the defaults ride out a flaky mirror."""

    attempts: int = 5            # total attempts, the first included
    backoff_initial: float = 0.5  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 8.0
    timeout: float = 30.0         # per connect / read; a stalled socket counts as a failed attempt


class DownloadFailed(Exception):
    """Why a download gave up; the caller turns it into a one-line FetchError with the manual hint."""


class _Transient(Exception):
    """Worth another attempt. The partial file is kept so the next attempt resumes from it."""


class _Bar:
    def restart(self, total: Optional[int], completed: int) -> None: ...
    def advance(self, n: int) -> None: ...


class _RichBar(_Bar):
    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def restart(self, total: Optional[int], completed: int) -> None:
        # reset, not update: a restart from zero must not read as negative speed.
        self.progress.reset(self.task, total=total, completed=completed)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


@contextmanager
def _progress(show: bool, label: str) -> Iterator[_Bar]:
    if not show:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    # stderr: stdout may be piped into another tool (e.g. a JSON manifest).
    with Progress(*columns, console=Console(stderr=True)) as p:
        yield _RichBar(p, p.add_task(label, total=None))


def _content_range(r: httpx.Response) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total size) from a Content-Range header; None where absent or '*'."""
    m = _CONTENT_RANGE.fullmatch(r.headers.get("Content-Range", "").strip())
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(3)) if m.group(3) != "*" else None
    return start, total


def _content_length(r: httpx.Response) -> Optional[int]:
    # With a content coding the header counts encoded bytes, not what we write; skip the check then.
    if r.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None
    try:
        return int(r.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _attempt(client: httpx.Client, url: str, part: Path, bar: _Bar) -> None:
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with client.stream("GET", url, headers=headers) as r:
            status = r.status_code
            if status == 416:
                _, total = _content_range(r)
                if total is not None and total == have:
                    return  # the partial already holds the whole file; verification decides if it is right
                part.unlink(missing_ok=True)
                raise _Transient(f"server refused Range bytes={have}- (file is {total} bytes); restarting")
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status} {r.reason_phrase}")
            if status not in (200, 206):
                raise DownloadFailed(f"HTTP {status} {r.reason_phrase}")
            length = _content_length(r)
            if status == 206:
                start, total = _content_range(r)
                if start != have:
                    part.unlink(missing_ok=True)
                    raise _Transient(f"server resumed at byte {start}, not {have}; restarting")
                mode = "ab"
            else:
                # 200 to a Range request: the server ignores ranges and sends it all, so start over.
                have, total, mode = 0, length, "wb"
            bar.restart(total, have)
            received = 0
            with open(part, mode) as f:
                try:
                    for chunk in r.iter_bytes():
                        f.write(chunk)
                        received += len(chunk)
                        bar.advance(len(chunk))
                finally:
                    # Keep what arrived, durably: the next attempt (or the next run) resumes from it.
                    f.flush()
                    os.fsync(f.fileno())
            if length is not None and received < length:
                raise _Transient(f"transfer ended after {received} of {length} bytes")
    except httpx.TransportError as e:
        # Connection refused/reset, timeouts, and a body cut short of Content-Length all land here.
        raise _Transient(f"{type(e).__name__}: {one_line(e)}") from e
    except httpx.HTTPError as e:
        raise DownloadFailed(f"{type(e).__name__}: {one_line(e)}") from e


def download(url: str, part: Path, policy: RetryPolicy, show_progress: bool) -> None:
    """Make ``part`` hold the whole file at ``url``, resuming whatever it already holds."""
    part.parent.mkdir(parents=True, exist_ok=True)
    retrying = Retrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max),
        retry=retry_if_exception_type(_Transient),
        reraise=True,
    )
    label = url.rsplit("/", 1)[-1][:40] or url
    with httpx.Client(follow_redirects=True, timeout=policy.timeout) as client, \
            _progress(show_progress, label) as bar:
        try:
            for attempt in retrying:
                with attempt:
                    _attempt(client, url, part, bar)
        except _Transient as e:
            raise DownloadFailed(f"{e} (gave up after {policy.attempts} attempts)") from None
