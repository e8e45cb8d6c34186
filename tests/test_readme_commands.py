"""The README's own conversion commands, as a newcomer types them: copied from the README's code
blocks, run from a fresh working directory, with the default relative ``out_dir``.

A MindIR bug that only a relative ``out_dir`` triggered reached main because every other test
passes absolute temporary paths; these commands are read from the README itself, so an example
added there is tested here without anyone writing a test for it.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import List

import pytest

from conftest import run_zoo

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> List[str]:
    """Every single-line ``python -m zoo convert ... weights=random`` in the README's bash blocks
    (sweeps with ``-m`` are left to the sweep tests: they run many conversions)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    out = []
    for block in blocks:
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command.startswith("python -m zoo convert") and "weights=random" in command \
                    and not command.endswith("\\"):
                out.append(command)
    return sorted(set(out))


def test_the_readme_has_the_commands_this_file_runs():
    commands = readme_commands()
    # the main job of the set-up block, and a command for each target the README shows with fresh weights
    assert "python -m zoo convert model=resnext50_32x4d source=torchvision target=onnx weights=random" in commands
    assert {t for c in commands for t in re.findall(r"target=(\w+)", c)} >= {"onnx", "vacc", "openvino", "mindir"}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """One fresh working directory for all of them, typed one after another as a newcomer would (a later
    command may reuse what an earlier one built, as it would for them)."""
    return tmp_path_factory.mktemp("newcomer")


@pytest.mark.parametrize("command", readme_commands())
def test_a_readme_command_runs_from_a_fresh_directory(fresh, command):
    args = shlex.split(command)[3:]  # after "python -m zoo"
    proc = run_zoo(*args, "progress=false", cwd=fresh, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr
    artifact = re.search(r"^  artifact +(\S+)", proc.stdout, flags=re.M)
    assert artifact and not Path(artifact.group(1)).is_absolute(), proc.stdout
    assert (fresh / artifact.group(1)).is_file()  # under the relative default out_dir, in the fresh directory
    assert [p.name for p in fresh.iterdir()] == ["artifacts"]  # nothing else written here
