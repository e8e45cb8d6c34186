"""A lease object in shared storage: one job on any machine builds (or downloads) a thing at a time.

The lease is created with a conditional write (``If-None-Match: *`` on S3), so of two jobs that ask at
once exactly one gets it. It holds an expiry that a background thread pushes forward while its job
works, so a job that dies (SIGKILL, a lost node) blocks the others only until the expiry; a dead job on
this same host is seen at once by its process id. A stale lease is deleted and asked for again; the
new holder reads its own token back after a short pause, so two jobs that broke the same stale lease at
once cannot both go on.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, Optional

from zoo.remote.location import Location

SETTLE_S = 0.3  # between creating a lease and reading it back


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    def __init__(self, loc: Location, rel: str, ttl_s: float, what: str) -> None:
        self.loc, self.rel, self.ttl_s, self.what = loc, rel, float(ttl_s), what
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._beat: Optional[threading.Thread] = None

    def _record(self) -> bytes:
        return json.dumps({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires": time.time() + self.ttl_s, "what": self.what}).encode()

    def holder(self) -> Optional[Dict[str, Any]]:
        return self.loc.read_json(self.rel)

    def stale(self, held: Optional[Dict[str, Any]]) -> bool:
        """Whether a lease record no longer protects anything: expired, or its process here is gone."""
        if held is None:
            return True
        if float(held.get("expires", 0)) < time.time():
            return True
        return held.get("host") == socket.gethostname() and not _alive(int(held.get("pid", 0)))

    def acquire(self) -> bool:
        """Take the lease if it is free or stale; True when this job holds it."""
        if not self.loc.create(self.rel, self._record()):
            if not self.stale(self.holder()):
                return False
            self.loc.remove(self.rel)
            if not self.loc.create(self.rel, self._record()):
                return False
        time.sleep(SETTLE_S)
        held = self.holder()
        if not held or held.get("token") != self.token:
            return False
        self._beat = threading.Thread(target=self._renew, daemon=True)
        self._beat.start()
        return True

    def _renew(self) -> None:
        from zoo.errors import UserError

        while not self._stop.wait(max(1.0, self.ttl_s / 3)):
            try:
                held = self.holder()
                if not held or held.get("token") != self.token:
                    return  # taken over: the holder's own checks decide what happens to its work
                self.loc.write(self.rel, self._record())
            except UserError:
                continue  # the store did not answer this time; the next beat tries again before the expiry

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        held = self.holder()
        if held and held.get("token") == self.token:
            self.loc.remove(self.rel)
