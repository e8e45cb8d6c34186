"""The registry's preprocessing against each source library's own evaluation transforms.

``zoo.preprocess.preprocess`` with the registry's InputSpec must produce what torchvision's
``Weights.transforms()`` and timm's ``create_transform(**resolve_data_config(...))`` produce on the
same PIL image. Bound: at most one 8-bit level in any value, i.e. max-abs <= 1 / (255 * min(std))
= 0.0175 in normalised units (times 1.001 for float rounding in the normalisation), and on average
no more than 1% of a level. One level is what a different rounding inside a resize could cost; a
wrong short side, crop offset or interpolation moves values by many levels (the controls below
show it), so the bound separates "same recipe" from "different recipe" with room to spare.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from zoo.preprocess import preprocess
from zoo.registry.schema import Interpolation

MODEL = "resnext50_32x4d"


@pytest.fixture(scope="module")
def registry():
    from zoo.registry.loader import load_registry
    from zoo.registry.query import resolve_variant

    reg = load_registry()
    return reg, resolve_variant(reg, MODEL)


def _spec(registry, source, tag):
    from zoo.registry.query import effective_input, select_weights

    reg, v = registry
    return effective_input(v, select_weights(reg, v, source, tag))


def _torchvision(tag):
    from torchvision.models import ResNeXt50_32X4D_Weights

    return ResNeXt50_32X4D_Weights[tag].transforms()


def _timm(tag):
    import timm
    from timm.data import create_transform, resolve_data_config

    cfg = resolve_data_config({}, model=timm.create_model(f"{MODEL}.{tag}", pretrained=False))
    return create_transform(**cfg)


@pytest.fixture(scope="module")
def images():
    """Generated scenes of varied sizes, plus extremes: panorama, tall, smaller than the crop, odd sizes."""
    from zoo.validators.inputs import generated_images

    rng = np.random.default_rng(11)
    extra = [(1000, 150), (233, 700), (120, 90), (257, 255), (224, 224)]
    noise = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in extra]
    return generated_images(4, seed=21) + noise


def _bound(spec):
    return 1.001 / (255.0 * min(spec.std))


def _diffs(spec, transform, images):
    return [np.abs(preprocess(im, spec) - transform(im).numpy()) for im in images]


CASES = [
    ("torchvision", "IMAGENET1K_V1", _torchvision),  # resize 256, bilinear
    ("torchvision", "IMAGENET1K_V2", _torchvision),  # resize 232, bilinear
    ("timm", "a1h_in1k", _timm),  # crop_pct 0.95 -> 235, bicubic
    ("timm", "tv_in1k", _timm),  # crop_pct 0.875 -> 256, bilinear
]


@pytest.mark.parametrize("source, tag, make", CASES, ids=[f"{s}-{t}" for s, t, _ in CASES])
def test_zoo_preprocessing_matches_the_library_transforms(registry, images, source, tag, make):
    spec = _spec(registry, source, tag)
    transform = make(tag)
    for im, d in zip(images, _diffs(spec, transform, images)):
        assert d.shape == (3, spec.size, spec.size)
        assert d.max() <= _bound(spec), (im.size, float(d.max()))
        assert d.mean() <= 0.01 * _bound(spec), (im.size, float(d.mean()))


def test_registry_input_specs_state_what_the_libraries_do(registry):
    """The numbers behind the parity: short side, crop, interpolation, mean and std, per checkpoint."""
    for source, tag, make in CASES:
        spec = _spec(registry, source, tag)
        t = make(tag)
        if source == "torchvision":
            got = (t.resize_size[0], t.crop_size[0], t.interpolation.value, list(t.mean), list(t.std))
        else:
            resize, crop, _, norm = t.transforms
            got = (resize.size, crop.size[0], resize.interpolation.value, norm.mean.tolist(), norm.std.tolist())
        want = (spec.resize_short(), spec.size, spec.interpolation.value, spec.mean, spec.std)
        assert got[:3] == want[:3], (source, tag)
        np.testing.assert_allclose(got[3] + got[4], want[3] + want[4], rtol=1e-6)


def test_the_bound_catches_a_different_recipe(registry, images):
    """Controls: the wrong interpolation or short side breaks the bound on every generated scene."""
    from dataclasses import replace

    spec = _spec(registry, "torchvision", "IMAGENET1K_V1")
    v1 = _torchvision("IMAGENET1K_V1")
    scenes = images[:4]
    wrong_interp = replace(spec, interpolation=Interpolation.bicubic)
    wrong_resize = replace(spec, resize=232)
    for wrong in (wrong_interp, wrong_resize):
        assert all(d.max() > 3 * _bound(spec) for d in _diffs(wrong, v1, scenes))
