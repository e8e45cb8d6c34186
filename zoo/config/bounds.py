"""Range checks for typed config fields, raised from the dataclasses' ``__post_init__``.

OmegaConf checks the types when Hydra composes; ``OmegaConf.to_object`` builds the dataclasses,
and these checks then see real ints, floats and strings.
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Union

from zoo.errors import UserError

Number = Union[int, float]


def at_least(key: str, value: Optional[Number], minimum: Number, what: str) -> None:
    """``value`` (None: unset) is finite and >= ``minimum``; else one line naming the key."""
    if value is not None and (not math.isfinite(value) or value < minimum):
        raise UserError(f"{key}={_shown(value)}: {what}")


def above(key: str, value: Optional[Number], what: str) -> None:
    """``value`` (None: unset) is finite and > 0."""
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise UserError(f"{key}={_shown(value)}: {what}")


def within(key: str, value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise UserError(f"{key}={_shown(value)}: {what}")


def one_of(key: str, value: Optional[str], choices: Iterable[str]) -> None:
    choices = list(choices)
    if value is not None and value not in choices:
        raise UserError(f"{key}={value}: choose one of {', '.join(choices)}")


def _shown(value: Number) -> str:
    """A number as the user would have typed it: -1, not -1.0."""
    return f"{value:g}" if isinstance(value, float) else str(value)
