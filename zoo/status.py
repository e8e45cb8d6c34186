"""What an artifact's status says, in one place.

``passed``: everything built here was checked, and passed. ``kit``: a vendor build kit whose compiler
did not run here; every check that could run here passed, but no engine was built or run.
``failed``: a hard check failed.
"""
from __future__ import annotations

PASSED, KIT, FAILED = "passed", "kit", "failed"


def status_of(checks_passed: bool, compiled: bool) -> str:
    if not checks_passed:
        return FAILED
    return PASSED if compiled else KIT


def checks_passed(status: str) -> bool:
    """Whether every check run here passed (a kit's too): a cache hit, publishable."""
    return status in (PASSED, KIT)
