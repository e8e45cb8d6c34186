"""The validated registry kept in the cache (zoo.registry.snapshot), and the registry's files as Hydra reads them.

Every command loads the registry; a load whose files are unchanged is rebuilt from the JSON snapshot of
the last load that passed. The expected registry always comes from the validating load (OmegaConf
against the schema), the code path that existed before the snapshot did.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from zoo.errors import UserError
from zoo.registry import loader

PACKAGE_CONF = Path(loader.__file__).resolve().parent.parent / "conf"
VARIANT = "resnext50_32x4d"


def load(root: Path) -> loader.Registry:
    return loader._load.__wrapped__(root.resolve())  # a fresh load, as a new process makes it


def snapshots(cache: Path) -> list:
    return sorted((cache / "registry").glob("*.json"))


@pytest.fixture
def conf(tmp_path) -> Path:
    root = tmp_path / "conf"
    shutil.copytree(PACKAGE_CONF, root)
    return root


@pytest.fixture
def cache() -> Path:
    return Path(os.environ["ZOO_CACHE"])  # the autouse fixture's, a folder of this test's own


def test_an_unchanged_registry_loads_from_its_snapshot(conf, cache, monkeypatch):
    expected = loader._validate(conf.resolve())
    assert snapshots(cache) == []
    assert load(conf) == expected
    (snap,) = snapshots(cache)
    assert json.loads(snap.read_text())["variants"][VARIANT]["arch"]["cardinality"] == 32

    def no_validation(root):
        raise AssertionError("validated again although no file changed")

    monkeypatch.setattr(loader, "_validate", no_validation)
    again = load(conf)
    assert again == expected and again.root == conf.resolve()
    assert again.variants[VARIANT].size == expected.variants[VARIANT].size and again.variants[VARIANT].size.params > 0


def test_an_edited_file_is_validated_again(conf, cache):
    load(conf)
    path = conf / "model" / f"{VARIANT}.yaml"
    text = path.read_text()
    first = re.search(r"top1: ([0-9.]+)", text)
    path.write_text(text[:first.start(1)] + "12.5" + text[first.end(1):])
    # the expected value, read straight from the edited YAML
    raw = yaml.safe_load(path.read_text())
    wanted = next(p["top1"] for w in raw["weights"] for p in w.get("published", []) if "top1" in p)
    assert wanted == 12.5
    reg = load(conf)
    got = next(p.top1 for w in reg.variants[VARIANT].weights for p in w.published if p.top1 is not None)
    assert got == 12.5 and len(snapshots(cache)) == 2

    path.write_text(path.read_text().replace("cardinality: 32", "cardinality: many", 1))
    with pytest.raises(UserError, match=r"resnext50_32x4d\.yaml: key 'arch\.cardinality'"):
        load(conf)
    assert len(snapshots(cache)) == 2  # nothing written for a registry that did not load


@pytest.mark.parametrize("damage", ["not json", "wrong type", "missing key"])
def test_a_damaged_snapshot_is_ignored(conf, cache, damage):
    expected = loader._validate(conf.resolve())
    load(conf)
    (snap,) = snapshots(cache)
    data = json.loads(snap.read_text())
    if damage == "not json":
        snap.write_text("{ truncated")
    elif damage == "wrong type":
        data["variants"][VARIANT]["arch"]["cardinality"] = "x"
        snap.write_text(json.dumps(data))
    else:
        del data["documents"]
        snap.write_text(json.dumps(data))
    assert load(conf) == expected


def test_an_unwritable_cache_still_loads(conf, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ZOO_CACHE", str(blocker / "cache"))  # under a regular file: nothing can be created
    assert load(conf) == loader._validate(conf.resolve())


def test_the_registry_variant_is_reused_only_for_its_file_unchanged(conf):
    reg = load(conf)
    raw = loader.read_yaml(conf / "model" / f"{VARIANT}.yaml")
    same = reg.as_written(raw)
    assert same == reg.variants[VARIANT] and same is not reg.variants[VARIANT]  # a copy the caller may change
    raw["input"] = {**raw.get("input", {}), "size": 256}
    assert reg.as_written(raw) is None
    assert loader.composed_variant(reg, raw).input.size == 256


def test_hydra_reads_every_registry_file_as_the_registry_loader_does():
    """Hydra composes ``model=`` and ``source=`` from the same files with its own YAML loader, whose
    resolvers differ from PyYAML's safe loader (an unquoted 56066e27 is a float to Hydra, a string to
    PyYAML): every file must mean the same to both, or a conversion runs with other values than the
    registry shows."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from zoo.config.store import register

    register()
    groups = {"model": sorted((PACKAGE_CONF / "model").glob("*.yaml")),
              "source": sorted((PACKAGE_CONF / "source").glob("*.yaml"))}
    assert len(groups["model"]) >= 16 and len(groups["source"]) >= 5
    with initialize_config_dir(config_dir=str(PACKAGE_CONF), version_base="1.3"):
        for group, files in groups.items():
            for path in files:
                cfg = compose("config", [f"{group}={path.stem}", "command=list"])
                as_hydra = OmegaConf.to_container(cfg[group], resolve=True)
                assert as_hydra == loader.read_yaml(path), f"{path.name} reads differently in Hydra"
