"""The registry holds every ResNeXt checkpoint the pinned libraries publish, every older name resolves,
and every figure cites a public document.

Expected values come from the libraries themselves (``timm.list_pretrained``, timm's deprecation table,
``torchvision.models.get_model_weights``, ``mmpretrain.list_models``), from the seed documents under
``tests/data/seeds`` and from ``tests/data/timm_results_imagenet_resnext.csv``: the header and the
``resnext*`` rows of timm's ``results/results-imagenet.csv`` at the commit ``conf/documents.yaml`` cites.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

from conftest import run_zoo
from zoo.registry.loader import Registry, load_registry
from zoo.registry.query import effective_input, resolve_checkpoint, resolve_variant

DATA = Path(__file__).parent / "data"
# timm 1.x's deprecation table sends these v0.6.5 names to resnext101_32x8d's WSL weights; v0.6.5 built
# each with its own width and file (ig_resnext101_32x16-c6f796b0.pth ...), which is what a seed table means.
TIMM_MISMAPPED = {"ig_resnext101_32x16d": ("resnext101_32x16d", "timm", "fb_wsl_ig1b_ft_in1k"),
                  "ig_resnext101_32x32d": ("resnext101_32x32d", "timm", "fb_wsl_ig1b_ft_in1k"),
                  # timm 1.x has no 32x48d weights: the torch hub build loads the same file
                  "ig_resnext101_32x48d": ("resnext101_32x48d", "torchvision", "fb_wsl_ig1b_ft_in1k")}


@pytest.fixture(scope="module")
def reg() -> Registry:
    return load_registry()


def _entries(reg: Registry, *sources: str) -> Iterator[Tuple[str, object]]:
    for v in reg.variants.values():
        for w in v.weights:
            if w.source in sources:
                yield v.name, w


def test_every_timm_resnext_checkpoint_is_in_the_registry(reg):
    import timm
    import torch
    from timm.models.resnet import ResNet

    listed = set(timm.list_pretrained("resnext*"))
    ours = {f"{w.model_name}.{w.tag}" for _, w in _entries(reg, "timm")}
    outside = {n for n in listed if n.split(".")[0] not in reg.variants}
    # what the registry leaves out must be a network its schema cannot describe (resnext26ts is a ByobNet)
    for name in sorted(outside):
        with torch.device("meta"):
            assert not isinstance(timm.create_model(name.split(".")[0]), ResNet), f"{name} is a ResNet-family ResNeXt"
    assert ours == listed - outside, f"missing: {sorted(listed - outside - ours)}; not in timm: {sorted(ours - listed)}"
    assert len(ours) >= 26


def test_every_torchvision_resnext_weight_is_in_the_registry(reg):
    import torchvision.models as tvm

    expected: Dict[Tuple[str, str, str], object] = {}
    for name in tvm.list_models():
        if "resnext" not in name:
            continue
        for w in tvm.get_model_weights(name):
            source = "torchvision_int8" if name.startswith("quantized_") else "torchvision"
            expected[(name.removeprefix("quantized_"), source, w.name)] = (name, w)
    # torch hub's WSL builds (model names ending _wsl) are torchvision state dicts without a weights enum
    ours = {(v, w.source, w.tag): w for v, w in _entries(reg, "torchvision", "torchvision_int8")
            if not w.model_name.endswith("_wsl")}
    assert set(ours) == set(expected)
    assert sum(1 for k in expected if k[1] == "torchvision_int8") == 3
    for key, (name, tw) in expected.items():
        w = ours[key]
        assert (w.model_name, w.url) == (name, tw.url), key
        metrics = tw.meta["_metrics"]["ImageNet-1K"]
        row = next(p for p in w.published if p.provenance.doc.startswith("torchvision"))
        assert (row.top1, row.top5, row.params) == (metrics["acc@1"], metrics["acc@5"], tw.meta["num_params"]), key
        t, spec = tw.transforms(), effective_input(reg.variants[key[0]], w)
        assert (spec.resize_short(), spec.size) == (t.resize_size[0], t.crop_size[0]), key


def test_int8_checkpoints_are_never_a_default_pick(reg):
    from zoo.converters.sources import convertible, default_source

    # a convert without source= picks from the convertible sources, and a sweep builds those only
    assert "torchvision_int8" not in convertible()
    for v in reg.variants.values():
        assert default_source(v) != "torchvision_int8", v.name
    for _, w in _entries(reg, "torchvision_int8"):
        assert w.model_name.startswith("quantized_")


def test_every_mmpretrain_resnext_checkpoint_is_in_the_registry(reg):
    import mmpretrain

    listed = set(mmpretrain.list_models("resnext*"))
    assert listed and {w.model_name for _, w in _entries(reg, "mmcls")} == listed


def test_timm_figures_are_its_results_table(reg):
    with open(DATA / "timm_results_imagenet_resnext.csv", newline="", encoding="utf-8") as f:
        table = {(r["model"], int(r["img_size"])): r for r in csv.DictReader(f)}
    seen: Set[Tuple[str, int]] = set()
    for name, w in _entries(reg, "timm"):
        ckpt = f"{w.model_name}.{w.tag}"
        rows = [p for p in w.published if p.provenance.doc == "timm_results"]
        assert rows, f"{ckpt} has no figure from timm's results table"
        # the first is at the input the registry converts at, so it is the one a validation compares with
        assert rows[0].input_size == effective_input(reg.variants[name], w).size, ckpt
        for p in rows:
            model, size = re.fullmatch(r"(\S+) \| img_size (\d+)", p.provenance.row).groups()
            t = table[(model, int(size))]
            assert model == ckpt and p.input_size == int(size)
            assert (p.top1, p.top5, p.params_m) == (float(t["top1"]), float(t["top5"]), float(t["param_count"])), ckpt
            crop, interpolation = re.search(r"crop_pct ([\d.]+), (\w+)", p.note or "").groups()
            assert (float(crop), interpolation) == (float(t["crop_pct"]), t["interpolation"]), ckpt
            seen.add((model, int(size)))
    # every eval size timm published for these checkpoints is transcribed
    assert seen == {k for k in table if k[0].split(".")[0] in reg.variants}


def _seed_names() -> Set[str]:
    """The model names the seed documents' tables print (first cell of each markdown row)."""
    names = set()
    for path in sorted((DATA / "seeds").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            cell = line.strip().strip("|").split("|")[0].strip()
            if line.lstrip().startswith("|") and re.fullmatch(r"(?i)\w*resnext\w*", cell):
                names.add(cell)
    return names


def test_every_seed_name_resolves(reg):
    names = _seed_names()
    assert {"ResNext101_32x8d", "ResNeXt50_32x4d", "tv_resnext50_32x4d", "resnext101_32x16d_wsl"} <= names
    for name in names:
        resolve_variant(reg, name)  # raises on an unknown name


def test_timms_older_names_land_on_their_checkpoint(reg):
    import timm.models

    deprecated = {k: v for k, v in timm.models.get_deprecated_models("resnet").items()
                  if v and "resnext" in k and v.split(".")[0] in reg.variants}
    assert {"tv_resnext50_32x4d", "gluon_resnext50_32x4d", "gluon_resnext101_32x4d", "gluon_resnext101_64x4d"} <= set(deprecated)
    for old, new in deprecated.items():
        cp = resolve_checkpoint(reg, old)
        assert cp is not None, old
        expected = TIMM_MISMAPPED.get(old) or (new.split(".")[0], "timm", new.split(".")[1])
        assert tuple(cp) == expected, old
        if old in TIMM_MISMAPPED:  # still mismapped by timm; if timm fixes it, the entry above goes
            assert new.split(".")[0] != old.removeprefix("ig_")


def test_every_figure_cites_a_public_document(reg):
    cited = {p.provenance.doc for v in reg.variants.values() for w in v.weights for p in w.published}
    cited |= {d.provenance.doc for v in reg.variants.values() for d in v.deployments}
    for doc in sorted(cited):
        url = reg.documents[doc].url or ""
        assert url.startswith("https://"), f"{doc} has no public URL"
    vendor = {(d.target, d.precision): reg.documents[d.provenance.doc].url for v in reg.variants.values()
              for d in v.deployments if d.target in ("ixrt", "vacc")}
    assert all("DeepSparkInference" in u for (t, _), u in vendor.items() if t == "ixrt")
    assert all("VastModelZOO" in u for (t, _), u in vendor.items() if t == "vacc")


def test_the_cli_pins_an_older_name_to_its_checkpoint_and_refuses_int8_conversion(tmp_path):
    import json

    got = run_zoo("lookup", "model=gluon_resnext101_64x4d", "format=json")
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)["rows"]
    assert rows and {(r["source"], r["tag"]) for r in rows} == {("timm", "gluon_in1k")}
    refused = run_zoo("convert", "model=resnext101_64x4d", "source=torchvision_int8", "weights=random",
                      f"out_dir={tmp_path}")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    # it says why, and what builds int8 here instead
    assert "source=torchvision precision=int8" in refused.stderr and not (tmp_path / "resnext101_64x4d").exists()
