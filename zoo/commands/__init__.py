"""One module per command; ``COMMANDS`` maps the command word to its entry point."""
from __future__ import annotations

import importlib
from typing import Callable, Dict

from omegaconf import DictConfig

# command -> "module:function"; imported on demand so `zoo list` never pays for torch.
_ENTRY_POINTS = {
    "list": "zoo.commands.registry_cmds:run_list",
    "lookup": "zoo.commands.registry_cmds:run_lookup",
    "convert": "zoo.commands.convert:run_convert",
    "fetch": "zoo.commands.fetch:run_fetch",
    "validate": "zoo.commands.validate:run_validate",
    "calib": "zoo.commands.calib:run_calib",
    "publish": "zoo.commands.publish:run_publish",
    "results": "zoo.commands.results:run_results",
    "gc": "zoo.commands.gc:run_gc",
    "report": "zoo.commands.report:run_report",
    "bench": "zoo.commands.bench:run_bench",
}


def _lazy(entry: str) -> Callable[[DictConfig], None]:
    module, function = entry.split(":")

    def run(cfg: DictConfig) -> None:
        getattr(importlib.import_module(module), function)(cfg)

    return run


COMMANDS: Dict[str, Callable[[DictConfig], None]] = {name: _lazy(entry) for name, entry in _ENTRY_POINTS.items()}
