"""zoo.fast_exit: a process that skips the interpreter's teardown still ends as ``sys.exit`` would."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run(body: str, tmp_path: Path) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from pathlib import Path
        from zoo.fast_exit import run_and_exit
        marks = Path({str(tmp_path)!r})
        atexit.register(lambda: (marks / "atexit").write_text("ran"))
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("body, code, out, err", [
    ("run_and_exit(lambda: print('done', end=''))", 0, "done", ""),
    ("run_and_exit(lambda: 3)", 3, "", ""),
    ("run_and_exit(lambda: sys.exit(2))", 2, "", ""),
    ("run_and_exit(lambda: sys.exit('bad input'))", 1, "", "bad input\n"),
])
def test_exit_status_output_and_exit_handlers_are_kept(tmp_path, body, code, out, err):
    proc = run(body, tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (code, out, err)
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_running_thread_is_waited_for(tmp_path):
    proc = run("""
        def late():
            time.sleep(1)
            (marks / "thread").write_text("finished")
        threading.Thread(target=late).start()
        run_and_exit(lambda: 0)
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "thread").read_text() == "finished" and (tmp_path / "atexit").exists()


def test_an_exception_still_shows_its_traceback(tmp_path):
    proc = run("run_and_exit(lambda: 1 / 0)", tmp_path)
    assert proc.returncode == 1 and "ZeroDivisionError" in proc.stderr and "Traceback" in proc.stderr
