"""The options of each hub (``conf/hub/<name>.yaml``), typed like the root config."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from zoo.config import bounds


@dataclass
class HubOptions:
    """What every hub takes: where the repo is and the tag of the commit."""

    name: str = ""
    repo: Optional[str] = None  # org/name; null: derived from org
    org: Optional[str] = None
    revision_tag: Optional[str] = None


@dataclass
class HfHub(HubOptions):
    private: Optional[bool] = None
    retries: int = 5
    retry_wait_s: float = 2.0

    def __post_init__(self) -> None:
        bounds.at_least("hub.retries", self.retries, 1, "give the attempts per step (an integer >= 1)")
        bounds.at_least("hub.retry_wait_s", self.retry_wait_s, 0, "give the first wait in seconds (>= 0)")


@dataclass
class LocalHub(HubOptions):
    root: Optional[str] = None  # required by publish: the mirror's folder


HUBS = {"hf": HfHub, "local": LocalHub}
