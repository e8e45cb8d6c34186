"""Errors the user can act on. The CLI prints their message (no traceback) and exits with 2."""


class UserError(Exception):
    """Bad input: an unknown name, a malformed override, a broken config file."""

    exit_code = 2


class SweepError(UserError):
    """Bad input that no job of a sweep can get past: it ends the sweep instead of skipping a job."""
