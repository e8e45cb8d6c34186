"""Hydra's ConfigStore entries for the typed configs, registered once before any composition.

``conf/config.yaml`` extends ``_zoo_root``, each ``conf/target/<name>.yaml`` extends
``/_zoo_target/<name>`` and each ``conf/hub/<name>.yaml`` ``/_zoo_hub/<name>``. The leading underscore
keeps these schema groups apart from the groups a user picks from. Hydra's launchers carry the store
to their workers (it is one of the singletons they pass on).
"""
from __future__ import annotations


def register() -> None:
    """Put the schemas into Hydra's ConfigStore (idempotent), and the ``${zoo.groups:}`` resolver that
    lists the groups a user picks from in ``--help`` (Hydra's own list would show the schema groups)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from zoo.sweep.launchers import register_resolvers

    if not OmegaConf.has_resolver("zoo.groups"):
        OmegaConf.register_new_resolver("zoo.groups", _groups)
    register_resolvers()  # the launcher presets' ${zoo.cpus:N}

    from zoo.config.hub import HUBS
    from zoo.config.schema import ZooConfig
    from zoo.targets import target_classes

    cs = ConfigStore.instance()
    cs.store(name="_zoo_root", node=ZooConfig)
    for name, target in target_classes().items():
        cs.store(group="_zoo_target", name=name, node=target.options)
    for name, hub in HUBS.items():
        cs.store(group="_zoo_hub", name=name, node=hub)


def _groups() -> str:
    """``group: option, option`` lines of the config folder in use (``ZOO_CONF`` may name a copy)."""
    from zoo.registry.loader import conf_dir

    root = conf_dir()
    lines = [f"{d.name}: {', '.join(sorted(p.stem for p in d.glob('*.yaml')))}"
             for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("*.yaml"))]
    return "\n".join(lines) + "\n"
