"""The one check of a command's configuration: compose it as Hydra will, build the typed dataclasses
(types, bounds, unknown keys, interpolations), check the model against the registry's schema and the
output paths against the file system. Any problem is one line naming the key, the value given and
what is allowed (a :class:`~zoo.errors.UserError`, exit 2), found before any work.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from zoo.errors import UserError

# OmegaConf's type messages -> what the key takes
_EXPECTED = (
    (re.compile(r"could not be converted to Integer"), "an integer"),
    (re.compile(r"could not be converted to Float"), "a number"),
    (re.compile(r"is not a valid bool"), "true or false"),
    (re.compile(r"Cannot convert '(list|dict|ListConfig|DictConfig)' to string"), "one value, not a list or a mapping"),
    (re.compile(r"is not Optional"), "a value; null is not allowed here"),
    (re.compile(r"is not a subclass of"), "a section of options: set its keys one by one (key.option=value)"),
    (re.compile(r"Cannot assign .* to a ListConfig|Invalid value assigned: .* is not a ListConfig"), "a list ([a,b])"),
)
# Output paths the commands create or write into: (key, a folder?)
OUTPUT_PATHS = (("out_dir", True), ("cache_dir", True), ("mirror_out", True), ("report_file", False),
                ("memory_ledger", False))
STORE_KEYS = ("out_dir", "cache_dir")  # these may name object storage instead (s3://...: zoo.remote)


def composed(command: str, overrides: Sequence[str], config_dir: Path, config_name: str = "config") -> DictConfig:
    """The config ``python -m zoo COMMAND *overrides`` runs with, checked (see the module's doc)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from zoo.config.store import register

    register()
    if GlobalHydra.instance().is_initialized():  # a caller's own Hydra app: compose beside it
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3", job_name=f"zoo_{command}"):
            cfg = compose(config_name, overrides=[*overrides, f"command={command}"])
        check_booleans(cfg, overrides)
        check_config(cfg, model_changed=any(w.lstrip("+~").startswith("model.") for w in overrides))
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as e:
        raise UserError(explain(e, overrides)) from None
    return cfg


# What a boolean key takes: Hydra's and OmegaConf's words (any case), and 1 / 0. OmegaConf alone would also
# take any other integer (-1, 2) as true.
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "1", "0"}


def check_booleans(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """A boolean key given anything but a boolean word is one line, not a truthy value."""
    from omegaconf.nodes import BooleanNode

    for word in overrides:
        head, eq, value = word.partition("=")
        key = head.lstrip("+~")
        if not eq or "/" in key or "@" in key:
            continue
        parent, _, leaf = key.rpartition(".")
        container = OmegaConf.select(cfg, parent) if parent else cfg
        node = container._get_node(leaf) if isinstance(container, DictConfig) and leaf in container else None
        if isinstance(node, BooleanNode) and value.strip().strip("'\"").lower() not in BOOLEAN_WORDS:
            raise UserError(f"{key}={value}: expected true or false")


def check_config(cfg: DictConfig, model_changed: bool = True) -> None:
    """Build the typed config (runs every ``__post_init__`` bound), check the model (the registry checked
    it as written, so only when an override changed it) and the output paths."""
    OmegaConf.to_object(cfg)
    if model_changed and cfg.get("model") is not None:
        from zoo.registry.loader import typed
        from zoo.registry.schema import Variant

        model = OmegaConf.to_container(cfg.model, resolve=True)
        typed(Variant, model, Path(f"model={cfg.model.get('name')}"), "model.")
    from zoo.remote.location import is_url

    for key, folder in OUTPUT_PATHS:
        value = cfg.get(key)
        if value is not None and not (key in STORE_KEYS and is_url(value)):
            check_output_path(key, str(value), folder)


def check_output_path(key: str, value: str, folder: bool) -> None:
    """A path the command will create or write: a folder (or a regular file) if it exists, under an
    existing folder, with no name longer than the file system takes and no symlink loop."""
    from zoo.store import check_write_target

    path = Path(value).expanduser()
    if not folder and path.is_dir():
        raise UserError(f"{key}={value}: is a folder; name the file to write")
    if not folder:
        try:
            check_write_target(path)  # a FIFO, a device, any link: named as what it is
        except UserError as e:
            raise UserError(f"{key}={value}: {e}") from None
    mode = _mode(key, value, path)
    if mode is not None:
        if folder and not stat.S_ISDIR(mode):  # a folder may be reached through a link
            raise UserError(f"{key}={value}: is not a folder; give a folder (it is created if missing)")
        return
    parent = path.absolute().parent
    while (mode := _mode(key, value, parent)) is None and parent != parent.parent:
        parent = parent.parent
    if mode is not None and not stat.S_ISDIR(mode):
        raise UserError(f"{key}={value}: {parent} is a file, so nothing can be created under it")


def _mode(key: str, value: str, path: Path) -> Optional[int]:
    """``path``'s file type (links followed); None when it does not exist; one line when it cannot be
    looked up (a name too long, a symlink loop, no permission)."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"{key}={value}: {e.strerror or e}; give a usable path") from None


def explain(e: BaseException, overrides: Iterable[str]) -> str:
    """One line for a Hydra or OmegaConf error: the key, the value given, what is allowed."""
    from hydra.errors import MissingConfigException

    if isinstance(e, MissingConfigException):
        group = str(Path(e.missing_cfg_file or "").parent) if e.missing_cfg_file else ""
        name = Path(e.missing_cfg_file or "").name
        options = ", ".join(o for o in (e.options or []) if not o.startswith("_"))
        if group and options:
            return f"unknown {group} '{name}': choose one of {options}"
        return _first_line(e)
    err = _omegaconf_cause(e)
    if err is None:
        return _first_line(e)
    key = getattr(err, "full_key", None) or ""
    object_type = getattr(err, "object_type", None)
    if re.search(r"\[\d+\]$", key):  # an item of a list (batches[0]): name the list as it was given
        key = re.sub(r"\[\d+\]$", "", key)
        if "." not in key:
            from zoo.config.schema import ZooConfig

            object_type = ZooConfig
    given = _given(overrides, key)
    shown = f"{key}={given}" if given is not None else f"'{key}'"
    text = _first_line(err)
    if type(err).__name__ == "ConfigAttributeError" or "not in struct" in text or " not in '" in text:
        return _unknown_key(key, getattr(err, "object_type", None))
    if "Interpolation" in type(err).__name__:
        return f"{shown}: {text}; an interpolation must name a key of the config or a set environment variable"
    for pattern, expected in _EXPECTED:
        if pattern.search(text):
            hint = _help(object_type, key)
            return f"{shown}: expected {expected}" + (f"; {hint}" if hint else "")
    return f"{shown}: {text}"


def _unknown_key(key: str, object_type: Optional[type]) -> str:
    parent, _, leaf = key.rpartition(".")
    known: List[str] = []
    if object_type is not None and dataclasses.is_dataclass(object_type):
        known = [f.name for f in dataclasses.fields(object_type) if f.name != "defaults"]
    near = difflib.get_close_matches(leaf, known, n=1)
    hint = f"did you mean {(parent + '.') if parent else ''}{near[0]}? " if near else ""
    where = f"'{parent}'" if parent else "the config"
    return (f"unknown key '{key}': {where} has no key '{leaf}'; {hint}"
            f"python -m zoo --cfg job lists every key (+{key}=VALUE adds one on purpose)")


def _help(object_type: Optional[type], key: str) -> str:
    """The field's ``help`` (its dataclass metadata): what the key is for, with an example."""
    if object_type is None or not dataclasses.is_dataclass(object_type):
        return ""
    leaf = key.rpartition(".")[2]
    return next((str(f.metadata.get("help", "")) for f in dataclasses.fields(object_type) if f.name == leaf), "")


def _omegaconf_cause(e: BaseException):
    from omegaconf.errors import OmegaConfBaseException

    seen = e
    while seen is not None:
        if isinstance(seen, OmegaConfBaseException) and getattr(seen, "full_key", None):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _given(overrides: Iterable[str], key: str) -> Optional[str]:
    for word in overrides:
        head, eq, value = word.partition("=")
        if eq and head.lstrip("+~").split("@", 1)[0] == key:
            return value
    return None


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
