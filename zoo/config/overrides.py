"""The command line's overrides, checked before Hydra runs: Hydra's own parser, the registry's names
(model aliases, sources, targets, formats, launchers), every YAML Hydra may read, and then the whole
composed config of each job a sweep would run (``zoo.config.check``). Bad input is one line, exit 2.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence

from zoo.errors import UserError

if TYPE_CHECKING:
    from zoo.registry.loader import Checkpoint

# Config groups a user picks an option of (conf/<group>/<option>.yaml).
GROUPS = ("model", "source", "target", "precision", "hub")
# A sweep's values checked per key: enough to meet a bad one, few enough to stay under a second or so.
SWEEP_VALUES_CHECKED = 64

# Flags that name a folder of config YAML for Hydra to compose from (long, short).
_CONFIG_DIR_FLAGS = (("--config-path", "-cp"), ("--config-dir", "-cd"))



def is_flag(tok: str, long: str, short: str) -> bool:
    """Whether Hydra's argparse reads ``tok`` as this flag: ``short``, ``long`` or any prefix of it
    (argparse takes abbreviations), each also as ``flag=value``."""
    name = tok.split("=", 1)[0]
    return (bool(short) and name == short) or (name.startswith("--") and len(name) > 2 and long.startswith(name))


def flag_values(flags: List[str], long: str, short: str) -> List[str]:
    """The values given to a flag: ``--flag=value``, or the word after it."""
    out = []
    for i, tok in enumerate(flags):
        if is_flag(tok, long, short):
            if "=" in tok:
                out.append(tok.split("=", 1)[1])
            elif i + 1 < len(flags):
                out.append(flags[i + 1])
    return out


def _check_config_dirs(root: Path, flags: List[str]) -> None:
    """Parse every YAML Hydra may compose (the registry and any --config-dir / --config-path folder) with
    the registry's loader first: a broken file or an alias bomb is then a one-line error, not a Hydra
    trace or a hang inside Hydra's own YAML loading. The registry's own files are skipped: loading the
    registry (before this) parsed them, or found their bytes in the snapshot of a load that did."""
    from zoo.registry.loader import read_yaml, registry_files

    folders = [root]
    for long, short in _CONFIG_DIR_FLAGS:
        for value in flag_values(flags, long, short):
            if not value.startswith("pkg://"):
                # Hydra reads a relative --config-path beside this package, a relative --config-dir from the cwd
                folders += [Path(value).expanduser(), Path(__file__).resolve().parents[1] / value]
    loaded = set(registry_files(root))
    for folder in dict.fromkeys(p.resolve() for p in folders if p.is_dir()):
        for path in sorted(folder.rglob("*.yaml")):
            if path not in loaded:
                read_yaml(path)


def check_overrides(overrides: List[str], flags: Optional[List[str]] = None) -> List[str]:
    """Parse overrides with Hydra's own parser; resolve model aliases; judge model/source/format."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, Glob
    from hydra.errors import HydraException

    from zoo.registry.loader import conf_dir, load_registry
    from zoo.registry.query import resolve_checkpoint, resolve_variant

    root = conf_dir()
    reg = load_registry(root)
    _check_config_dirs(root, flags or [])

    parser = OverridesParser.create()
    out = list(overrides)
    targets: List[object] = []  # every target value given (a sweep's too), for keep_state
    keep_state_given = False
    for word in overrides:
        try:
            (ov,) = parser.parse_overrides([word])
        except HydraException as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"malformed override '{word}': {first} (expected key=value)") from None
        key = ov.key_or_group
        value = ov.value()
        if key in GROUPS and isinstance(value, (int, float, bool)):
            value = str(value)  # model=123: Hydra takes only a name (a string) for a group
            named = f"{word.split('=', 1)[0]}={value}"
            out[out.index(word)] = named
            word = named
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
        elif key == "batches" and isinstance(value, (ChoiceSweep, int, float, str)):
            # bench times every batch of the list in one job: batches=1,8,32 is that list, not a sweep
            items = value.list if isinstance(value, ChoiceSweep) else [value]
            out[out.index(word)] = f"{word.split('=', 1)[0]}=[{','.join(str(x) for x in items)}]"
        elif key == "hydra/launcher" and isinstance(value, str):
            _check_launcher(value)
        elif key == "target":
            targets.append(value)
        keep_state_given = keep_state_given or key == "keep_state"
    # an unknown target / precision / hub / launcher and a bad format are the composition's to find
    # (check_composition), for every value of a sweep too
    multirun = any(f in ("-m", "--multirun") for f in flags or [])
    return out + (_keep_state(targets) if multirun and not keep_state_given else [])


def _keep_state(values: List[object]) -> List[str]:
    """``keep_state=true`` for a sweep over several targets of which one rebuilds the network from the
    source's weights (mindir): whichever job builds the canonical model keeps them, so that job need not
    build the source model a second time."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob

    from zoo.targets import target_class, target_names

    known = target_names()
    names = set()
    for value in values:
        given = value.filter(known) if isinstance(value, Glob) else value.list if isinstance(value, ChoiceSweep) else [value]
        names |= {str(n) for n in given if str(n) in known}
    return ["keep_state=true"] if len(names) > 1 and any(target_class(t).needs_state for t in names) else []


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


def check_composition(command: Optional[str], overrides: List[str], flags: Sequence[str] = ()) -> None:
    """Compose the config of every job these overrides make, as Hydra will, and check it.

    Without ``-m`` a sweep (``a,b``, ``range()``, ``glob()``) is refused. With it, the first value of each
    sweep is composed together, then each further value of each sweep (the first ``SWEEP_VALUES_CHECKED``)
    with the others' first values: every value is checked once, not every combination.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob, IntervalSweep

    from zoo.config.check import composed
    from zoo.registry.loader import conf_dir

    multirun = any(f in ("-m", "--multirun") for f in flags)
    root, config_name = _config_source(flags)
    parser = OverridesParser.create()
    base: List[str] = []
    values: List[tuple] = []  # (index in base, head, [more values])
    for word in overrides:
        (ov,) = parser.parse_overrides([word])
        head = word.split("=", 1)[0]
        if not ov.is_sweep_override():
            base.append(word)
            continue
        if not multirun:
            raise UserError(f"'{word}' is a sweep (one job per value): add -m to run them all, or give one value")
        value = ov.value()
        if isinstance(value, IntervalSweep):
            raise UserError(f"'{word}': interval() needs an optimizing sweeper; give values as a,b or range()")
        if isinstance(value, Glob):
            group = Path(root if ov.key_or_group != "model" else conf_dir()) / ov.key_or_group
            found = value.filter(sorted(p.stem for p in group.glob("*.yaml")))
            if not found:
                raise UserError(f"'{word}' matches no option of {ov.key_or_group}")
            strings = found
        else:
            strings = list(itertools.islice(ov.sweep_string_iterator(), SWEEP_VALUES_CHECKED))
        if not strings:
            raise UserError(f"'{word}' sweeps over no value")
        values.append((len(base), head, strings[1:]))
        base.append(f"{head}={strings[0]}")
    jobs = [base]
    for index, head, more in values:
        jobs += [base[:index] + [f"{head}={v}"] + base[index + 1:] for v in more]
    for job in jobs:
        composed(command or "list", job, root, config_name)


def _config_source(flags: Sequence[str]) -> "tuple[Path, str]":
    """The folder and name of the primary config Hydra will compose (``--config-path``, ``--config-name``)."""
    from zoo.registry.loader import conf_dir

    root = conf_dir()
    for value in flag_values(list(flags), "--config-path", "-cp"):
        if not value.startswith("pkg://"):
            given = Path(value).expanduser()
            root = given if given.is_absolute() else Path(__file__).resolve().parents[1] / value
    names = flag_values(list(flags), "--config-name", "-cn")
    name = names[-1] if names else "config"
    name = name[:-5] if name.endswith(".yaml") else name
    if not (root / f"{name}.yaml").is_file():
        raise UserError(f"no config '{name}.yaml' in {root}: the zoo composes its own conf/ (ZOO_CONF=DIR "
                        f"names a copy); --config-dir DIR adds a folder of configs")
    return root, name
