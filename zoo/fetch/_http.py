"""Plain HTTP(S) downloads: streamed, resumed with Range requests, retried with back-off, and bounded.

Two bounds hold for every download: its size (what the server announces, else the caller's limit, else
``DEFAULT_MAX_BYTES``) and its total time (``RetryPolicy.total_timeout``, retries and back-off included).
Past either, what was written is deleted: a body that never ends or a server that trickles cannot fill
the cache or hold the process.
"""
from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from zoo.fetch._common import one_line

_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")

# No announced size and no limit from the caller: well above the largest ResNeXt checkpoint (3.3 GB).
DEFAULT_MAX_BYTES = 16 << 30


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Tests shrink the back-off; the defaults ride out a flaky mirror."""

    attempts: int = 5            # total attempts, the first included
    backoff_initial: float = 0.5  # seconds before the 2nd attempt; doubles each time
    backoff_max: float = 8.0
    timeout: float = 30.0         # per connect / read; a stalled socket counts as a failed attempt
    total_timeout: float = 3600.0  # the whole download, retries included; past it, what was written is deleted


class DownloadFailed(Exception):
    """Why a download gave up; the caller turns it into a one-line FetchError with the manual hint."""


class BoundExceeded(DownloadFailed):
    """Too many bytes or too long: not retried, and the partial file is deleted."""


class _Transient(Exception):
    """Worth another attempt. The partial file is kept so the next attempt resumes from it."""


@dataclass(frozen=True)
class _Bounds:
    max_bytes: Optional[int]   # the caller's limit (registry size with a margin); None: none known
    deadline: float            # time.monotonic() at which the download gives up
    total_timeout: float

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check_time(self) -> None:
        if self.remaining() <= 0:
            raise BoundExceeded(f"still not complete after {self.total_timeout:g} s, the bound on a whole "
                                f"download (download_timeout=SECONDS raises it)")

    def cap(self, announced: Optional[int]) -> int:
        """The most bytes the file may have: the server's figure unless it exceeds the caller's limit."""
        if announced is not None and self.max_bytes is not None and announced > self.max_bytes:
            raise BoundExceeded(f"the server announces {announced:,} bytes, more than the {self.max_bytes:,} "
                                f"this file may have")
        if announced is not None:
            return announced
        return self.max_bytes if self.max_bytes is not None else DEFAULT_MAX_BYTES


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


def _attempt(client: httpx.Client, url: str, part: Path, bar: _Bar, bounds: _Bounds) -> None:
    bounds.check_time()
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    # httpx times each socket read: capped at the time left, a stalled read outlives the total bound by at
    # most one read time-out (the bound itself is checked after every chunk).
    timeout = httpx.Timeout(max(0.05, min(client.timeout.read or bounds.total_timeout, bounds.remaining())))
    try:
        with client.stream("GET", url, headers=headers, timeout=timeout) as r:
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
            cap = bounds.cap(total)
            bar.restart(total, have)
            received = 0
            with open(part, mode) as f:
                try:
                    for chunk in r.iter_bytes():
                        if have + received + len(chunk) > cap:
                            raise BoundExceeded(f"the body went past {cap:,} bytes, the most this file may have "
                                                f"({'as announced' if total is not None else 'no size announced'})")
                        f.write(chunk)
                        received += len(chunk)
                        bar.advance(len(chunk))
                        bounds.check_time()
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


def download(url: str, part: Path, policy: RetryPolicy, show_progress: bool, max_bytes: Optional[int] = None) -> None:
    """Make ``part`` hold the whole file at ``url``, resuming whatever it already holds.

    ``max_bytes`` bounds the file where the server announces no size (and refuses an announced size above
    it); ``policy.total_timeout`` bounds the whole download. Past either, ``part`` is deleted."""
    part.parent.mkdir(parents=True, exist_ok=True)
    bounds = _Bounds(max_bytes, time.monotonic() + policy.total_timeout, policy.total_timeout)
    backoff = wait_exponential(multiplier=policy.backoff_initial, max=policy.backoff_max)

    def wait(state: RetryCallState) -> float:  # never sleep past the deadline
        return max(0.0, min(backoff(state), bounds.remaining()))

    retrying = Retrying(
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait,
        retry=retry_if_exception_type(_Transient),
        reraise=True,
    )
    label = url.rsplit("/", 1)[-1][:40] or url
    with httpx.Client(follow_redirects=True, timeout=policy.timeout) as client, \
            _progress(show_progress, label) as bar:
        try:
            for attempt in retrying:
                with attempt:
                    _attempt(client, url, part, bar, bounds)
        except BoundExceeded as e:
            written = part.stat().st_size if part.exists() else 0
            part.unlink(missing_ok=True)  # a resume would only grow it further
            raise BoundExceeded(f"{e}; deleted the {written:,} bytes written") from None
        except _Transient as e:
            raise DownloadFailed(f"{e} (gave up after {policy.attempts} attempts)") from None
