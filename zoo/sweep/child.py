"""Run one sweep job in a child process, so a native crash fails that job and not the whole sweep.

A backend that segfaults (a converter's C++ library, a runtime's kernel) kills the process it runs
in. In a sweep that process would be the launcher's worker, or with the basic launcher the sweep
itself. :func:`run_isolated` runs a picklable function in a fresh interpreter, and
:func:`raise_outcome` turns what happened there back into what the function would have done in
this process: a ``UserError`` / ``SweepError`` with the same message, a ``SystemExit`` with the
same code, or, for a child killed by a signal, a :class:`JobCrashed` that the CLI records as a
failed job.

A fresh interpreter rather than ``multiprocessing``: it does not re-import the launcher worker's
``__main__`` (a Ray or loky worker script) and works the same under every launcher."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from zoo.errors import SweepError, Unavailable, UserError

@dataclass(frozen=True)
class Outcome:
    """How a child ended: ``ok``, ``user_error``, ``exit``, ``error`` (an exception) or ``crashed``."""

    kind: str
    exit_code: int = 0
    message: str = ""
    sweep_error: bool = False  # a user_error that no job of the sweep can get past
    unavailable: bool = False  # a user_error saying the combination does not exist (skipped)
    signal: Optional[str] = None  # crashed: the signal's name (SIGSEGV, SIGKILL from the OOM killer ...)


class JobCrashed(SystemExit):
    """A job's process was killed by a signal: a failed job (exit 1), with the signal named."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(1)
        self.why = f"crashed: {signal_name}"


class JobError(RuntimeError):
    """An unexpected exception in a job's child process; its traceback is already on stderr."""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_CHILD = "import sys; from zoo.sweep.child import _child_main; _child_main(sys.argv[1])"


def run_isolated(fn: Callable[..., Any], *args: Any, env: Optional[Mapping[str, str]] = None) -> Outcome:
    """Call ``fn(*args)`` in a fresh Python process and report how it ended.

    ``fn`` and ``args`` must be picklable (``fn`` by reference: a module-level function). The child
    inherits this process's stdout, stderr, ``sys.path`` and environment (plus ``env``).
    """
    payload = pickle.dumps(list(sys.path)) + pickle.dumps((fn, args))
    with tempfile.TemporaryDirectory(prefix="zoo-job-") as tmp:
        result = Path(tmp) / "outcome.pickle"
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # keep this process's lines before the child's
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(result)], input=payload,
                              env={**os.environ, **(env or {})})
        if proc.returncode < 0:
            return Outcome("crashed", 1, f"killed by {signal_name(-proc.returncode)}",
                           signal=signal_name(-proc.returncode))
        try:
            return pickle.loads(result.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            code = proc.returncode or 1
            return Outcome("exit", code, f"the job's process ended (exit {code}) without reporting how")


def raise_outcome(outcome: Outcome) -> None:
    """Do in this process what the child's function did: return, or raise the same kind of error."""
    if outcome.kind == "ok":
        return
    if outcome.kind == "user_error":
        kind = SweepError if outcome.sweep_error else Unavailable if outcome.unavailable else UserError
        err = kind(outcome.message)
        err.exit_code = outcome.exit_code
        raise err
    if outcome.kind == "exit":
        raise SystemExit(outcome.exit_code)
    if outcome.kind == "crashed":
        raise JobCrashed(outcome.signal or "a signal")
    raise JobError(outcome.message)


def _capture(fn: Callable[..., Any], args: tuple) -> Outcome:
    try:
        fn(*args)
        return Outcome("ok")
    except UserError as e:
        return Outcome("user_error", e.exit_code, str(e), sweep_error=isinstance(e, SweepError),
                       unavailable=isinstance(e, Unavailable))
    except SystemExit as e:
        code = e.code
        if code is None:
            code = 0
        elif not isinstance(code, int):
            print(code, file=sys.stderr)  # sys.exit("message") prints the message and exits 1
            code = 1
        return Outcome("ok") if code == 0 else Outcome("exit", code)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises JobError
        traceback.print_exc()
        return Outcome("error", 1, f"{type(e).__name__}: {e}")


def _child_main(result_path: str) -> None:
    stdin = sys.stdin.buffer
    for entry in reversed(pickle.load(stdin)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    fn, args = pickle.load(stdin)
    outcome = _capture(fn, args)
    sys.stdout.flush()
    sys.stderr.flush()
    tmp = result_path + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump(outcome, f)
    os.replace(tmp, result_path)
    from zoo.fast_exit import exit_now

    exit_now(0)  # the outcome is handed back: skip the teardown of what the job loaded
