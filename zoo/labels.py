"""Class names shipped with the registry (ImageNet-1k, in torchvision's order and wording)."""
from __future__ import annotations

from functools import lru_cache
from typing import List

from zoo.registry.loader import conf_dir


@lru_cache(maxsize=1)
def imagenet_labels() -> List[str]:
    return (conf_dir() / "class_names" / "imagenet1k.txt").read_text(encoding="utf-8").splitlines()
