"""Command line: ``python -m zoo COMMAND [hydra overrides]``.

This module splits the command word off, refuses the Hydra flags that load code, has every job's
config composed and checked before any work (``zoo.config``: bad input is one line and exit code 2),
and lets Hydra run the command.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from zoo.config.overrides import check_composition, check_overrides, is_flag
from zoo.errors import SweepError, Unavailable, UserError

# Hydra flags that take a value as the next word.
_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}
# Info flags whose value is optional: --cfg job|hydra|all, --info [all|config|defaults|...].
_INFO_VALUES = {
    "--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
    "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
    "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
    "--package": (), "-p": (),
}
_INFO_FLAGS_WITH_VALUE = set(_INFO_VALUES)
_INFO_FLAGS = {"--help", "-h", "--hydra-help", "--version", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
# Hydra's --experimental-rerun FILE unpickles FILE and runs the task on it: loading a pickle runs whatever
# code it names. The other flags read config YAML (checked like the registry's, _check_config_dirs) or
# print; none loads code or pickles.
_REFUSED_FLAGS = (("--experimental-rerun", ""),)
# Flags Hydra answers without composing the config.
_HYDRA_ONLY_FLAGS = {"--version", "--hydra-help", "--shell-completion", "-sc"}
_COMPLETION = ("install=", "uninstall=", "query=")
USAGE = (
    "usage: python -m zoo COMMAND [key=value ...]   (commands: {commands}; "
    "python -m zoo --help explains)"
)


def split_command(argv: List[str]) -> Tuple[Optional[str], List[str], List[str]]:
    """Split argv into the command word, Hydra flags (with their values) and overrides."""
    command = None
    flags: List[str] = []
    overrides: List[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in _FLAGS_WITH_VALUE or tok in _INFO_FLAGS_WITH_VALUE:
            flags.append(tok)
            takes = tok in _FLAGS_WITH_VALUE or (
                i + 1 < len(argv) and argv[i + 1] in _INFO_VALUES.get(tok, ())
            )
            if takes and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        elif tok.startswith("-"):
            flags.append(tok)
        elif command is None and "=" not in tok:
            command = tok
        else:
            overrides.append(tok)
        i += 1
    return command, flags, overrides


def check_flags(flags: List[str], overrides: List[str]) -> None:
    """Refuse the Hydra flags that load code; ``--shell-completion`` needs its subcommand."""
    if any(tok in ("--shell-completion", "-sc") for tok in flags) and not (
            len(overrides) == 1 and overrides[0].startswith(_COMPLETION)):
        raise UserError("--shell-completion needs one of install=bash|zsh|fish, uninstall=bash|zsh|fish, "
                        "query=SHELL (e.g. python -m zoo --shell-completion install=bash)")
    for tok in flags:
        for long, short in _REFUSED_FLAGS:
            if is_flag(tok, long, short):
                name = tok.split("=", 1)[0]
                given = long if name == long else f"{name} (read as {long})"
                raise UserError(f"{given} is not supported: it unpickles a file, which can run any code; "
                                f"re-run a job with its command line (its overrides) instead")


def main(argv: Optional[List[str]] = None) -> None:
    from zoo.commands import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    command, flags, overrides = split_command(argv)
    try:
        check_flags(flags, overrides)
        if command is None:
            if not any(tok in _INFO_FLAGS for tok in flags):
                raise UserError(USAGE.format(commands=", ".join(COMMANDS)))
        elif command not in COMMANDS:
            raise UserError(f"unknown command '{command}': use one of {', '.join(COMMANDS)}")
        if not any(tok in _HYDRA_ONLY_FLAGS for tok in flags):
            overrides = check_overrides(overrides, flags)
            check_composition(command, overrides, flags)  # every job's whole config, before any work
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if command is not None:
        overrides.append(f"command={command}")
    _run_hydra(flags + overrides)


def run() -> None:
    """The ``zoo`` program (``python -m zoo``): :func:`main`, then an exit without the interpreter's
    teardown of torch and the runtimes (zoo.fast_exit)."""
    from zoo.fast_exit import run_and_exit

    run_and_exit(main)


def _run_hydra(args: List[str]) -> None:
    import hydra
    from omegaconf import DictConfig

    from zoo.commands import COMMANDS
    from zoo.config.store import register
    from zoo.sweep.child import JobCrashed, JobError
    from zoo.sweep.launchers import run_command_isolated
    from zoo.registry.loader import conf_dir

    register()  # the typed schemas the configs extend
    failures = _FailureRecord.create(args)

    def task(cfg: DictConfig) -> None:
        sweep = _in_multirun()
        try:
            if sweep and cfg.command in ISOLATED_COMMANDS:
                run_command_isolated(cfg)  # a native crash fails this job only
            else:
                COMMANDS[cfg.command](cfg)
        except UserError as e:
            if not sweep or isinstance(e, SweepError):
                print(f"error: {e}", file=sys.stderr)
                sys.exit(e.exit_code)
            if not isinstance(e, Unavailable):  # bad input for this job (a failed download, a bad file)
                failures.add(" ".join(_job_overrides()))
                print(f"job failed: {e}; the sweep goes on", file=sys.stderr)
                return
            # a combination the registry does not have (a variant a source does not publish ...) is
            # not a failure of the sweep: one line, and the next job runs
            print(f"skipped: {e}", file=sys.stderr)
        except JobError as e:  # an unexpected exception in the job's child; its traceback is above
            failures.add(" ".join(_job_overrides()))
            print(f"job failed ({e}); the sweep goes on", file=sys.stderr)
        except SystemExit as e:
            if not sweep or e.code in (0, None):
                raise
            why = e.why if isinstance(e, JobCrashed) else f"exit {e.code}"
            failures.add(" ".join(_job_overrides()))  # recorded in its manifest; the sweep goes on
            print(f"job failed ({why}); the sweep goes on", file=sys.stderr)

    sys.argv = [sys.argv[0] or "zoo", *args]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a Ray launcher's local instance sends no usage report
    try:
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(task)()
        failed = failures.read()
    finally:
        failures.remove()
    if failed:
        print(f"error: {len(failed)} job(s) failed: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)


# Sweep jobs of these commands run in a child process (zoo.sweep.child): they load native backends.
ISOLATED_COMMANDS = ("convert", "validate", "calib", "publish")


class _FailureRecord:
    """The failed jobs of one sweep, in a file: a parallel launcher runs jobs in other processes.

    The file (written only when a job fails) lives under the download cache (``cache_dir=``,
    ``$ZOO_CACHE`` or the user cache dir), which a cluster's nodes usually share, so SLURM jobs on
    other machines are counted too.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path  # travels to launcher workers with the task function
        self.local: List[str] = []  # no file (a single run) or an unwritable one: jobs that ran here

    @classmethod
    def create(cls, args: List[str]) -> "_FailureRecord":
        import uuid

        if "-m" not in args and "--multirun" not in args:
            return cls(None)
        from zoo.cache_dir import default_cache_dir

        given = [a.split("=", 1)[1] for a in args if a.startswith("cache_dir=")]
        from zoo.remote.location import is_url

        # a shared store (cache_dir=s3://...) is not where this machine keeps its sweep's record
        local = given and given[-1] not in ("", "null") and not is_url(given[-1])
        root = Path(given[-1]).expanduser() if local else default_cache_dir()
        return cls(root / "sweeps" / f"failed-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt")

    def add(self, job: str) -> None:
        try:
            if self.path is None:
                raise OSError("no record file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:  # one short line per append
                f.write(job.replace("\n", " ") + "\n")
        except OSError:
            self.local.append(job)

    def read(self) -> List[str]:
        lines: List[str] = []
        if self.path is not None and self.path.is_file():
            lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line]
        return lines + self.local

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _job_overrides() -> List[str]:
    from hydra.core.hydra_config import HydraConfig

    return [o for o in HydraConfig.get().overrides.task if not o.startswith("command=")]
