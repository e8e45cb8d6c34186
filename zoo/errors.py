"""Errors the user can act on. The CLI prints their message (no traceback) and exits with 2."""


class UserError(Exception):
    """Bad input: an unknown name, a malformed override, a broken config file."""

    exit_code = 2


class Unavailable(UserError):
    """The combination asked for does not exist: a variant a source does not publish, a tag it lacks,
    a source with no converter, a precision a target does not build, an artifact never built.
    A sweep skips such a job with one line; any other error fails the job."""


class SweepError(UserError):
    """Bad input that no job of a sweep can get past: it ends the sweep instead of skipping a job."""
