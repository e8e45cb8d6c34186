"""MindCV's ResNet parameter names and the canonical (torchvision / timm) ones; no framework imported."""
from __future__ import annotations

# MindSpore BatchNorm2d parameter -> the canonical name
BN_RENAME = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def to_canonical(name: str) -> str:
    """A MindCV ResNet parameter name under torchvision's name (``layer1.0.bn1.gamma`` -> ``layer1.0.bn1.weight``)."""
    name = name.replace(".down_sample.", ".downsample.")
    if name.startswith("classifier."):
        name = "fc." + name[len("classifier."):]
    head, _, last = name.rpartition(".")
    return f"{head}.{BN_RENAME.get(last, last)}"  # only BatchNorm2d has parameters with these names
