"""The registry against its schema, its documents, and the libraries that publish the weights."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from zoo.registry.arch_stats import arch_stats, params_as_counted
from zoo.registry.loader import load_registry
from zoo.registry.query import effective_input, list_rows, resolve_variant, select_weights

SEEDS = Path(__file__).parent / "data" / "seeds"


@pytest.fixture(scope="module")
def reg():
    return load_registry()


def all_weights(reg):
    return [(v, w) for v in reg.variants.values() for w in v.weights]


def _seed_rows(text: str):
    """(model, source, top1, top5, complexity, params) from the markdown tables of seed 002."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 7 or not cells[0].startswith(("resnext", "tv_", "gluon_")):
            continue
        source = re.match(r"\[(\w+)\]", cells[1]).group(1)
        yield cells[0], source, *(float(c) for c in cells[2:6])


def test_every_seed_002_row_is_transcribed_exactly(reg):
    rows = list(_seed_rows((SEEDS / "002_7f5ebeb50e91b63c.txt").read_text(encoding="utf-8")))
    assert len(rows) == 29  # 14 torchvision/timm/mmcls rows + 15 ppcls rows
    published = {}
    for v, w in all_weights(reg):
        for p in w.published:
            if p.provenance.doc == "vastai_resnext":
                published[p.provenance.row] = (v, w, p)
    for model, source, top1, top5, complexity, params in rows:
        key = f"{model} | {source}"
        assert key in published, f"seed 002 row {key} is missing from the registry"
        v, w, p = published[key]
        assert w.source == source
        assert (p.top1, p.top5, p.params_m) == (top1, top5, params), key
        assert (p.macs_g if source != "ppcls" else p.flops_g) == complexity, key
        assert p.input_size == 224
    assert len(published) == len(rows)


def test_seed_deployments_are_transcribed(reg):
    d101 = reg.variants["resnext101_32x8d"].deployments
    ixrt = next(d for d in d101 if d.target == "ixrt")
    assert (ixrt.batch, ixrt.fps, ixrt.top1, ixrt.top5, ixrt.precision) == (32, 825.78, 79.277, 94.498, "fp16")
    assert "825.78" in (SEEDS / "000_4b6b3d5692d141d8.txt").read_text()
    vacc = {d.precision: (d.top1, d.top5) for d in d101 if d.target == "vacc"}
    assert vacc == {"fp16": (78.396, 94.132), "int8": (77.974, 93.992)}
    bpu = {d.precision: d for d in reg.variants["resnext50_32x4d"].deployments if d.target == "bpu"}
    assert bpu["fp32"].top1 == 76.25 and bpu["int8"].top1 == 76.00 and bpu["int8"].fps == 189.61
    rdk = (SEEDS / "003_cdb8a87fec505a21.txt").read_text()
    assert "| 24.99  | 76.25 | 76.00 | 5.89" in rdk
    mindcv = next(w for w in reg.variants["resnext50_32x4d"].weights if w.source == "mindcv")
    assert (mindcv.published[0].top1, mindcv.published[0].top5, mindcv.published[0].params_m) == (78.64, 94.18, 25.10)
    assert "32x48d" in reg.variants["resnext101_32x48d"].weights[0].notes[0]


def test_every_number_has_a_known_document(reg):
    for v, w in all_weights(reg):
        for p in w.published:
            assert p.provenance.doc in reg.documents
            assert p.provenance.table and p.provenance.row
    for v in reg.variants.values():
        for d in v.deployments:
            assert d.provenance.doc in reg.documents


def _decimals(x: float) -> int:
    s = repr(x)
    return len(s.split(".")[1]) if "." in s else 0


def test_params_disputes_are_marked_exactly_where_numbers_disagree(reg):
    """A published params figure that does not round to the architecture's count, under the convention
    the row records (MindCV's includes BN moving statistics), is marked."""
    checked = 0
    for v, w in all_weights(reg):
        for p in w.published:
            exact = params_as_counted(v.arch, p.params_counted)
            if p.params is not None:
                assert p.params == exact, (v.name, w.tag)
            if p.params_m is None:
                continue
            checked += 1
            agrees = round(exact / 1e6, _decimals(p.params_m)) == p.params_m
            marked = any(d.startswith("params_m:") for d in p.disputed)
            assert agrees != marked, f"{v.name} {w.source}/{w.tag}: {p.params_m}M vs {exact}"
    assert checked > 30
    ppcls50 = next(w for w in reg.variants["resnext50_32x4d"].weights if w.source == "ppcls")
    assert ppcls50.published[0].params_m == 23.64 and ppcls50.published[0].disputed


@pytest.mark.parametrize(
    "name", ["resnext50_32x4d", "resnext50d_32x4d", "resnext101_32x4d", "resnext101_32x8d", "resnext101_64x4d", "resnext101_32x16d"]
)
def test_arch_stats_match_timm_models(reg, name):
    """The spec counts what timm's own model has (timm builds every plain and 'd' variant here)."""
    import timm
    import torch

    v = reg.variants[name]
    with torch.device("meta"):
        model = timm.create_model(name)
    assert arch_stats(v.arch).params == sum(p.numel() for p in model.parameters())


def test_torchvision_weights_meta_agree():
    import torchvision.models as tvm

    reg = load_registry()
    # torchvision's own builders; the WSL hub build (torchvision's ResNet class) has no weights enum
    rows = [(v, w) for v, w in all_weights(reg) if w.source == "torchvision" and not w.model_name.endswith("_wsl")]
    assert len(rows) == 5
    for v, w in rows:
        enum = tvm.get_model_weights(w.model_name)
        meta_w = enum[w.tag]
        assert meta_w.url == w.url
        assert re.search(rf"-{w.sha256_prefix}\.pth$", meta_w.url)
        metrics = meta_w.meta["_metrics"]["ImageNet-1K"]
        tv_row = next(p for p in w.published if p.provenance.doc == "torchvision_weights")
        assert (tv_row.top1, tv_row.top5) == (metrics["acc@1"], metrics["acc@5"])
        assert tv_row.params == meta_w.meta["num_params"] == arch_stats(v.arch).params
        assert tv_row.flops_g == meta_w.meta["_ops"]
        t = meta_w.transforms()
        spec = effective_input(v, w)
        assert spec.resize_short() == t.resize_size[0]
        assert spec.size == t.crop_size[0]
        assert spec.interpolation.value == t.interpolation.value
        assert list(t.mean) == pytest.approx(spec.mean) and list(t.std) == pytest.approx(spec.std)


def test_timm_pretrained_cfgs_agree(reg):
    import timm
    from timm.models import get_pretrained_cfg

    rows = [(v, w) for v, w in all_weights(reg) if w.source == "timm"]
    assert len(rows) >= 10
    available = set(timm.list_pretrained("resnext*"))
    for v, w in rows:
        name = f"{w.model_name}.{w.tag}"
        assert name in available, name
        cfg = get_pretrained_cfg(name)
        spec = effective_input(v, w)
        assert w.hf_hub_id == cfg.hf_hub_id.rstrip("/") or w.hf_hub_id == f"timm/{name}"
        assert cfg.input_size == (3, spec.size, spec.size)
        assert cfg.interpolation == spec.interpolation.value
        assert cfg.crop_pct == pytest.approx(spec.crop_pct)
        assert spec.resize_short() == math.floor(spec.size / cfg.crop_pct)
        assert cfg.license == w.license
        assert cfg.url == w.url


def test_mmpretrain_metafile_agrees(reg):
    import mmpretrain
    import yaml

    meta = Path(mmpretrain.__file__).parent / ".mim" / "configs" / "resnext" / "metafile.yml"
    if not meta.exists():
        pytest.skip("this mmpretrain wheel ships no metafile")
    models = {m["Name"]: m for m in yaml.safe_load(meta.read_text())["Models"]}
    rows = [(v, w) for v, w in all_weights(reg) if w.source == "mmcls"]
    assert len(rows) == 4
    for v, w in rows:
        m = models[w.model_name]
        assert m["Weights"] == w.url
        assert m["Weights"].endswith(f"-{w.sha256_prefix}.pth")
        mf = next(p for p in w.published if p.provenance.doc == "mmpretrain_metafile")
        metrics = m["Results"][0]["Metrics"]
        assert (mf.top1, mf.top5) == (metrics["Top 1 Accuracy"], metrics["Top 5 Accuracy"])
        assert mf.params_m * 1e6 == pytest.approx(m["Metadata"]["Parameters"])
        assert mf.flops_g * 1e9 == pytest.approx(m["Metadata"]["FLOPs"])


def test_aliases_resolve_and_names_are_unique(reg):
    assert resolve_variant(reg, "resnext50_vd_32x4d").name == "resnext50d_32x4d"
    assert resolve_variant(reg, "resnext101_32x48d_wsl").name == "resnext101_32x48d"
    rows = list_rows(reg)
    keys = [(r["variant"], r["source"], r["tag"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r["source"] for r in rows} == {"torchvision", "timm", "mmcls", "ppcls", "mindcv", "torchvision_int8"}


def test_list_filters(reg):
    rows = list_rows(reg, "resnext101*", "ppcls")
    assert rows and all(r["variant"].startswith("resnext101") and r["source"] == "ppcls" for r in rows)
    assert {r["variant"] for r in rows} >= {"resnext101_32x8d", "resnext101d_64x4d", "resnext101_32x48d"}
    # an alias matches too
    assert {r["variant"] for r in list_rows(reg, "*_vd_*")} == {
        "resnext50d_32x4d", "resnext50d_64x4d", "resnext101d_32x4d", "resnext101d_64x4d",
        "resnext152d_32x4d", "resnext152d_64x4d",
    }


def test_the_torch_hub_wsl_entry_builds_what_its_hubconf_builds():
    """facebookresearch/WSL-Images: ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=48)."""
    from torchvision.models.resnet import Bottleneck, ResNet

    from zoo.converters.sources import get_adapter

    reg = load_registry()
    v = resolve_variant(reg, "resnext101_32x48d")
    w = select_weights(reg, v, "torchvision", None)
    assert w.model_name == "resnext101_32x48d_wsl" and w.url.endswith(f"-{w.sha256_prefix}.pth")
    model = get_adapter("torchvision").create(v, w)
    assert isinstance(model, ResNet) and isinstance(model.layer3[0], Bottleneck)
    assert model.layer3[0].conv2.groups == 32 and model.layer1[0].conv2.out_channels == 32 * 48
    assert sum(p.numel() for p in model.parameters()) == arch_stats(v.arch).params
