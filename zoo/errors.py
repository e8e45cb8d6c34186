"""Errors the user can act on. The CLI prints their message (no traceback) and exits with 2."""


class UserError(Exception):
    """Bad input: an unknown name, a malformed override, a broken config file.

    The message is one line: a control character it quotes from the input (a newline inside an
    override) is shown escaped."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        if not text.isprintable():
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        super().__init__(text, *args)


class Unavailable(UserError):
    """The combination asked for does not exist: a variant a source does not publish, a tag it lacks,
    a source with no converter, a precision a target does not build, an artifact never built.
    A sweep skips such a job with one line; any other error fails the job."""


class SweepError(UserError):
    """Bad input that no job of a sweep can get past: it ends the sweep instead of skipping a job."""
