"""One module per command; ``COMMANDS`` maps the command word to its entry point."""
from __future__ import annotations

from typing import Callable, Dict

from omegaconf import DictConfig


def _list(cfg: DictConfig) -> None:
    from zoo.commands.registry_cmds import run_list

    run_list(cfg)


def _lookup(cfg: DictConfig) -> None:
    from zoo.commands.registry_cmds import run_lookup

    run_lookup(cfg)


def _convert(cfg: DictConfig) -> None:
    from zoo.commands.convert import run_convert

    run_convert(cfg)


def _validate(cfg: DictConfig) -> None:
    from zoo.commands.validate import run_validate

    run_validate(cfg)


def _calib(cfg: DictConfig) -> None:
    from zoo.commands.calib import run_calib

    run_calib(cfg)


def _publish(cfg: DictConfig) -> None:
    from zoo.commands.publish import run_publish

    run_publish(cfg)


def _results(cfg: DictConfig) -> None:
    from zoo.commands.results import run_results

    run_results(cfg)


def _gc(cfg: DictConfig) -> None:
    from zoo.commands.gc import run_gc

    run_gc(cfg)


# Imports stay inside the entry points so `zoo list` never pays for torch.
COMMANDS: Dict[str, Callable[[DictConfig], None]] = {
    "list": _list,
    "lookup": _lookup,
    "convert": _convert,
    "validate": _validate,
    "calib": _calib,
    "publish": _publish,
    "results": _results,
    "gc": _gc,
}
