"""Import the class a config file names as ``module:Class`` (a target's ``plugin:``, a source's ``adapter:``)."""
from __future__ import annotations

import importlib
from typing import Type, TypeVar

from zoo.errors import UserError

T = TypeVar("T")


def load_class(spec: str, base: Type[T], where: str, missing_hint: str) -> Type[T]:
    """The class ``spec`` names, a subclass of ``base``; one line naming ``where`` (the YAML) otherwise.
    ``missing_hint`` follows a package that is not installed."""
    module, _, name = spec.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise UserError(f"{where}: {spec} needs a package that is not installed ({e.name}); {missing_hint}") from None
    except (AttributeError, ValueError):
        raise UserError(f"{where}: {spec}: no class {name or '(none named)'} in {module}") from None
    if not (isinstance(found, type) and issubclass(found, base)):
        raise UserError(f"{where}: {spec} is not a {base.__module__}.{base.__name__}")
    return found
