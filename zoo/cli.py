"""Command line: ``python -m zoo COMMAND [hydra overrides]``.

Hydra composes the config; this module only splits the command word off, checks the overrides
the registry can judge (model, source, format) so bad input is one line and exit code 2, and
dispatches to the command.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from zoo.errors import SweepError, Unavailable, UserError

if TYPE_CHECKING:
    from zoo.registry.loader import Checkpoint

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
# Flags that name a folder of config YAML for Hydra to compose from (long, short).
_CONFIG_DIR_FLAGS = (("--config-path", "-cp"), ("--config-dir", "-cd"))

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


def _is_flag(tok: str, long: str, short: str) -> bool:
    """Whether Hydra's argparse reads ``tok`` as this flag: ``short``, ``long`` or any prefix of it
    (argparse takes abbreviations), each also as ``flag=value``."""
    name = tok.split("=", 1)[0]
    return (bool(short) and name == short) or (name.startswith("--") and len(name) > 2 and long.startswith(name))


def _flag_values(flags: List[str], long: str, short: str) -> List[str]:
    """The values given to a flag: ``--flag=value``, or the word after it."""
    out = []
    for i, tok in enumerate(flags):
        if _is_flag(tok, long, short):
            if "=" in tok:
                out.append(tok.split("=", 1)[1])
            elif i + 1 < len(flags):
                out.append(flags[i + 1])
    return out


def check_flags(flags: List[str]) -> None:
    """Refuse the Hydra flags that load code."""
    for tok in flags:
        for long, short in _REFUSED_FLAGS:
            if _is_flag(tok, long, short):
                name = tok.split("=", 1)[0]
                given = long if name == long else f"{name} (read as {long})"
                raise UserError(f"{given} is not supported: it unpickles a file, which can run any code; "
                                f"re-run a job with its command line (its overrides) instead")


def _check_config_dirs(root: Path, flags: List[str]) -> None:
    """Parse every YAML Hydra may compose (the registry and any --config-dir / --config-path folder) with
    the registry's loader first: a broken file or an alias bomb is then a one-line error, not a Hydra
    trace or a hang inside Hydra's own YAML loading."""
    from zoo.registry.loader import read_yaml

    folders = [root]
    for long, short in _CONFIG_DIR_FLAGS:
        for value in _flag_values(flags, long, short):
            if not value.startswith("pkg://"):
                # Hydra reads a relative --config-path beside this package, a relative --config-dir from the cwd
                folders += [Path(value).expanduser(), Path(__file__).resolve().parent / value]
    for folder in dict.fromkeys(p.resolve() for p in folders if p.is_dir()):
        for path in sorted(folder.rglob("*.yaml")):
            read_yaml(path)


def check_overrides(overrides: List[str], flags: Optional[List[str]] = None) -> List[str]:
    """Parse overrides with Hydra's own parser; resolve model aliases; judge model/source/format."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob
    from hydra.errors import HydraException

    from zoo.registry.loader import conf_dir, load_registry
    from zoo.registry.query import resolve_checkpoint, resolve_variant
    from zoo.render import check_format

    root = conf_dir()
    _check_config_dirs(root, flags or [])
    reg = load_registry(root)

    parser = OverridesParser.create()
    out = list(overrides)
    for word in overrides:
        try:
            (ov,) = parser.parse_overrides([word])
        except HydraException as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"malformed override '{word}': {first} (expected key=value)") from None
        key = ov.key_or_group
        _check_key(ov, key, root)
        value = ov.value()
        if key == "model":
            if isinstance(value, str):
                canonical = resolve_variant(reg, value).name
                out[out.index(word)] = f"{word.split('=', 1)[0]}={canonical}"
                out += _pin_checkpoint(resolve_checkpoint(reg, value), value, overrides)
            elif isinstance(value, ChoiceSweep):
                pinned = [str(x) for x in value.list if resolve_checkpoint(reg, str(x))]
                if pinned:
                    cp = resolve_checkpoint(reg, pinned[0])
                    raise UserError(f"'{pinned[0]}' names one checkpoint ({cp.variant} source={cp.source} tag={cp.tag}); "
                                    f"a sweep takes variant names: model={cp.variant} source={cp.source} tag={cp.tag}")
                names = [resolve_variant(reg, str(x)).name for x in value.list]
                out[out.index(word)] = f"{word.split('=', 1)[0]}={','.join(names)}"
            elif isinstance(value, Glob):
                if not value.filter(list(reg.variants)):
                    raise UserError(f"'{word}' matches no variant; run `python -m zoo list`")
        elif key == "source":
            values = value.list if isinstance(value, ChoiceSweep) else [value]
            for s in values:
                if isinstance(s, str) and s not in reg.sources:
                    raise UserError(f"unknown source '{s}': known sources are {', '.join(sorted(reg.sources))}")
        elif key == "format" and isinstance(value, str):
            check_format(value)
        elif key == "hydra/launcher" and isinstance(value, str):
            _check_launcher(value)
        elif key in ("target", "precision", "hub") and isinstance(value, str):
            names = sorted(p.stem for p in (root / key).glob("*.yaml"))
            if value not in names:
                raise UserError(f"unknown {key} '{value}': choose one of {', '.join(names)}")
    return out


def _pin_checkpoint(cp: Optional[Checkpoint], name: str, overrides: List[str]) -> List[str]:
    """The source= and tag= overrides an older checkpoint name implies (timm's ``tv_resnext50_32x4d``
    is resnext50_32x4d's tv_in1k weights from timm); one the user gave must agree with it."""
    if cp is None:
        return []
    given = {w.split("=", 1)[0].lstrip("+~"): w.split("=", 1)[1] for w in overrides if "=" in w}
    added = []
    for key, want in (("source", cp.source), ("tag", cp.tag)):
        have = given.get(key)
        if have is None:
            added.append(f"{key}={want}")
        elif have != want:
            raise UserError(f"model={name} is {cp.variant} source={cp.source} tag={cp.tag}, not {key}={have}; "
                            f"for another checkpoint use model={cp.variant} {key}={have}")
    return added


def _check_key(ov, key: str, root) -> None:
    """An override of a key the config does not have is one line with the nearest known key, not
    Hydra's multi-line "Key 'x' is not in struct" (``+key=value`` adds a key on purpose)."""
    import difflib

    from zoo.registry.loader import read_yaml

    if ov.is_add() or ov.is_force_add() or ov.is_delete() or "/" in key or key.startswith("hydra"):
        return
    top = key.split(".", 1)[0]
    known = {k for k in read_yaml(root / "config.yaml") if k != "defaults"}
    known |= {p.name for p in root.iterdir() if p.is_dir()}  # config groups: model, source, target ...
    if top not in known:
        near = difflib.get_close_matches(top, sorted(known), n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise UserError(f"unknown key '{top}': {hint}python -m zoo --cfg job lists every key")


# The launcher presets in conf/hydra/launcher/ and the extra that installs each one's plugin.
_LAUNCHER_PLUGINS = {"zoo_joblib": ("hydra_plugins.hydra_joblib_launcher", "sweep"),
                     "zoo_ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
                     "zoo_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm")}


def _check_launcher(name: str) -> None:
    """A preset whose plugin is not installed is one line naming the extra, not a Hydra trace."""
    import importlib.util

    if name in _LAUNCHER_PLUGINS:
        module, extra = _LAUNCHER_PLUGINS[name]
        if importlib.util.find_spec(module) is None:
            raise UserError(f"hydra/launcher={name} needs its Hydra plugin: pip install 'resnext-zoo[{extra}]'")


def main(argv: Optional[List[str]] = None) -> None:
    from zoo.commands import COMMANDS

    argv = list(sys.argv[1:] if argv is None else argv)
    command, flags, overrides = split_command(argv)
    try:
        check_flags(flags)
        if command is None:
            if not any(tok in _INFO_FLAGS for tok in flags):
                raise UserError(USAGE.format(commands=", ".join(COMMANDS)))
        elif command not in COMMANDS:
            raise UserError(f"unknown command '{command}': use one of {', '.join(COMMANDS)}")
        overrides = check_overrides(overrides, flags)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    if command is not None:
        overrides.append(f"command={command}")
    _run_hydra(flags + overrides)


def _run_hydra(args: List[str]) -> None:
    import hydra
    from omegaconf import DictConfig

    from zoo.commands import COMMANDS
    from zoo.isolation import JobCrashed, JobError, run_command_isolated  # also registers the presets' ${zoo.cpus:}
    from zoo.registry.loader import conf_dir

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


# Sweep jobs of these commands run in a child process (zoo.isolation): they load native backends.
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
        from zoo.fetch import default_cache_dir

        given = [a.split("=", 1)[1] for a in args if a.startswith("cache_dir=")]
        root = Path(given[-1]).expanduser() if given and given[-1] not in ("", "null") else default_cache_dir()
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
