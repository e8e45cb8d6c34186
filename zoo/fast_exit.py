"""Ending a process without the interpreter's teardown.

Once torch, ONNX Runtime or MindSpore is loaded, the interpreter's teardown (a last garbage collection,
then freeing every module's objects one by one) takes 0.5 to 1 s, and every conversion, sweep job and
MindSpore call pays it. A process whose work and output are done ends instead as multiprocessing's own
children and mypy's command line do: exit handlers run, log handlers and streams are flushed, then
``os._exit``.
"""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from typing import Callable, NoReturn, Optional


def hard_exit(code: int) -> NoReturn:
    """Flush the log handlers and the standard streams, then end the process with ``code``."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be said on it
            pass
    os._exit(code)


def run_and_exit(main: Callable[[], Optional[int]]) -> NoReturn:
    """Run a program's ``main`` and end the process as ``sys.exit`` would, minus the teardown.

    The exit handlers (``atexit``) still run. While another non-daemon thread runs, the ordinary exit,
    which waits for it, is taken instead. An exception other than ``SystemExit`` propagates as usual."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)  # sys.exit("message"): the message, and status 1
        code = 1
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """End the process as ``sys.exit(code)`` would, minus the teardown: the exit handlers run, then
    :func:`hard_exit`. While another non-daemon thread runs, the ordinary exit (which waits for it) is taken."""
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    hard_exit(code)
