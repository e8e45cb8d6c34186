"""A tiny ResNeXt trained on real images: scikit-learn's 8x8 digits, for accuracy checks of quantised artifacts.

Random weights give near-tied logits, so an int8 model agrees or disagrees with fp32 by chance. This
model is a confident classifier, trained in well under a minute from PNG files preprocessed exactly as
its registry entry says, so its held-out top-1 holds for what `zoo convert` builds from the same entry.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, List, Tuple

import numpy as np

if TYPE_CHECKING:
    from zoo.registry.schema import InputSpec

VARIANT, SOURCE, TAG = "resnext_digits", "torchvision", "digits"
SIZE = 32  # 8x8 digits upsampled; resize equals size so the centre crop keeps the whole digit
CALIB_PER_CLASS = 10
THREADS = 1  # one thread: as fast as two on a quiet 2-core machine, and 3-7x faster when the other core is busy
EPOCHS, BATCH, LR = 3, 64, 5e-3

_VARIANT_YAML = """\
# A tiny ResNeXt trained on scikit-learn's digits by the tests: real bottleneck blocks with grouped 3x3 convs.
name: {name}
description: "ResNeXt, one bottleneck per stage, cardinality 8, base width 4, 10 digit classes"
arch: {{layers: [1, 1, 1, 1], cardinality: 8, base_width: 4, num_classes: 10}}
input: {{size: {size}, resize: {size}, interpolation: bilinear}}
weights:
  - source: {source}
    tag: {tag}
    model_name: resnet.ResNet
    default: true
    license: bsd-3-clause
    url: {url}
    notes: ["trained by the tests on scikit-learn's load_digits; convert it with weights=<checkpoint>"]
"""


@dataclass
class Digits:
    conf: Path  # a registry root, for ZOO_CONF
    checkpoint: Path  # torchvision state dict (.pth)
    val: Path  # ImageFolder tree of held-out RGB PNGs
    calib: Path  # ImageFolder tree of training RGB PNGs, every class
    variant: str
    source: str
    tag: str
    fp32_top1: float  # percent, on `val`, through the registry's preprocessing


def write_registry(conf: Path, checkpoint: Path) -> None:
    """The packaged registry plus the digits variant."""
    from zoo.registry.loader import PACKAGE_CONF

    shutil.copytree(PACKAGE_CONF, conf)
    text = _VARIANT_YAML.format(name=VARIANT, size=SIZE, source=SOURCE, tag=TAG, url=checkpoint.as_uri())
    (conf / "model" / f"{VARIANT}.yaml").write_text(text, encoding="utf-8")


def _digit_images(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Every digit upsampled (bilinear) to size x size, 0-255 grayscale uint8, and its class."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float()[:, None] * (255.0 / 16.0)  # pixel values are 0..16
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x[:, 0].round().clamp(0, 255).to(torch.uint8).numpy(), d.target


def _save_pngs(folder: Path, images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> List[Tuple[Path, int]]:
    from PIL import Image

    out = []
    for i in index:
        path = folder / str(labels[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).convert("RGB").save(path)
        out.append((path, int(labels[i])))
    return out


def load_split(files: List[Tuple[Path, int]], spec: InputSpec) -> Tuple[np.ndarray, np.ndarray]:
    """PNG files through the registry's preprocessing: an NCHW float batch and its labels."""
    from PIL import Image

    from zoo.preprocess import preprocess

    def one(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return preprocess(im, spec)

    return np.stack([one(p) for p, _ in files]), np.array([c for _, c in files])


def image_folder(root: Path) -> List[Tuple[Path, int]]:
    """(file, class) of an ImageFolder tree whose class folders are the digits."""
    return [(p, int(p.parent.name)) for p in sorted(root.glob("*/*.png"))]


def _train(model, x: np.ndarray, y: np.ndarray, seed: int) -> None:
    import torch

    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    steps = EPOCHS * ((len(xt) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), BATCH):
            idx = order[start:start + BATCH]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def make_digits(root: Path, seed: int = 0) -> Digits:
    """Registry, PNG splits, trained checkpoint and its held-out top-1, all under ``root``."""
    import torch
    from sklearn.model_selection import train_test_split

    from zoo.converters.sources import get_adapter
    from zoo.registry.loader import load_registry
    from zoo.registry.query import effective_input, resolve_variant, select_weights

    root = Path(root)
    conf, checkpoint = root / "conf", root / f"{VARIANT}.pth"
    write_registry(conf, checkpoint)
    reg = load_registry(conf)  # by path: the cache is keyed by root, so no other registry is read
    v = resolve_variant(reg, VARIANT)
    w = select_weights(reg, v, SOURCE, TAG)
    spec = effective_input(v, w)

    images, labels = _digit_images(SIZE)
    train_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    train = _save_pngs(root / "train", images, labels, np.sort(train_idx))
    _save_pngs(root / "val", images, labels, np.sort(val_idx))
    rng = np.random.default_rng(seed)
    for c in range(10):
        mine = [p for p, k in train if k == c]
        for p in rng.choice(len(mine), CALIB_PER_CLASS, replace=False):
            dst = root / "calib" / str(c) / mine[p].name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(mine[p], dst)

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(seed)
        adapter = get_adapter(SOURCE)
        model = adapter.create(v, w)  # what `zoo convert` builds from this entry
        _train(model, *load_split(train, spec), seed)
        torch.save(model.state_dict(), checkpoint)  # torchvision's own format: a plain state dict
        xv, yv = load_split(image_folder(root / "val"), spec)
        with torch.no_grad():
            pred = model(torch.from_numpy(xv)).argmax(1).numpy()
    finally:
        torch.set_num_threads(threads)
    return Digits(conf=conf, checkpoint=checkpoint, val=root / "val", calib=root / "calib", variant=VARIANT,
                  source=SOURCE, tag=TAG, fp32_top1=float(100.0 * (pred == yv).mean()))
