"""`zoo calib`: a class-stratified, seeded calibration set from an image folder, in a target's format.

    python -m zoo calib data=/data/imagenet/train target=vacc n=1000
    python -m zoo calib data=DIR target=bpu model=resnext50_32x4d [source=timm] [tag=...]

The set is written to ``<out_dir>/calib/<target>/`` (built in a staging folder, then renamed into
place); ``n`` defaults to the target yaml's calibration size. The formats are ``zoo.calib_formats``'.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from zoo.calib_formats import CalibFormat, build_set, calibration_format, default_count, sample_folder
from zoo.errors import UserError
from zoo.registry.schema import InputSpec
from zoo.store import plain_name

PROGRESS_MIN = 100  # smaller sets finish before a progress bar says anything useful


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{key}={value}: expected a whole number of at least 1")
    return value


def calib_count(cfg: DictConfig, options: Dict[str, Any]) -> int:
    if cfg.get("n") is not None:
        return _positive_int(cfg.n, "n")
    n = default_count(options)
    if n is None:
        raise UserError(f"target {options['name']} has no calibration size in its yaml: give n=COUNT")
    return _positive_int(n, f"target {options['name']} calibration size")


def input_of(cfg: DictConfig, target: str, fmt: CalibFormat) -> Tuple[Optional[InputSpec], Dict[str, Any]]:
    """The effective InputSpec of model= / source= / tag=, and who it belongs to (for the manifest)."""
    if cfg.get("model") is None:
        if fmt.needs_input:
            raise UserError(f"calib target={target} writes resized data: name the variant, "
                            f"e.g. model=resnext50_32x4d [source=timm]")
        return None, {}
    from zoo.converters.sources import default_source
    from zoo.registry.loader import composed_variant, load_registry
    from zoo.registry.query import effective_input, select_weights

    reg = load_registry()
    # The composed model config, overrides included (model.input.size=...), as convert reads it.
    variant = composed_variant(reg, OmegaConf.to_container(cfg.model, resolve=True))
    source = default_source(variant, cfg.source.name if cfg.get("source") is not None else None)
    weights = select_weights(reg, variant, source, cfg.get("tag"))
    return effective_input(variant, weights), {"variant": variant.name, "source": weights.source, "tag": weights.tag}


@contextmanager
def progress_bar(enabled: bool, total: int, label: str) -> Iterator[Optional[Callable[[], None]]]:
    """A rich progress bar on stderr; yields the per-file tick (None when disabled)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _size(records: List[Dict[str, Any]]) -> str:
    total = sum(r["size"] for r in records)
    return f"{total / 2**20:.1f} MiB" if total >= 2**20 else f"{total / 2**10:.0f} KiB"


def use_line(fmt: CalibFormat, data: Path, set_folder: Path, n: int) -> str:
    return fmt.use.format(data=data, set_folder=set_folder, n=n)


def summary(m: Dict[str, Any], folder: Path, fmt: CalibFormat) -> str:
    data = folder / fmt.folder
    c = m["classes"]
    who = f" for {m['variant']} {m['source']}/{m['tag']}" if m.get("variant") else ""
    lines = [f"calib {m['target']}{who}: {m['n']} images -> {data}   (seed {m['seed']})",
             f"  format     {fmt.description}"]
    if fmt.kind == "jpeg":
        copied = sum(r["from"] == "copied" for r in m["files"])
        lines[-1] += f"; {copied} copied, {m['n'] - copied} re-encoded"
    if m["input"] is not None:
        i = m["input"]
        lines.append(f"  input      resize {i['resize']} ({i['interpolation']}), crop {i['size']}"
                     + (f", mean {i['mean']} std {i['std']}" if fmt.kind == "npy" else ""))
    lines.append(f"  classes    {c['covered']}/{c['total']} represented")
    if m["n"] < c["total"]:
        lines.append(f"  note       n={m['n']} is fewer than the {c['total']} classes: not every class is "
                     f"represented; n>={c['total']} covers them all")
    if m["n_requested"] > m["images_available"]:
        lines.append(f"  note       data holds {m['images_available']} images: all written "
                     f"(n={m['n_requested']} asked)")
    lines.append(f"  files      {m['n']} files, {_size(m['files'])}"
                 + (f", list {folder / m['filelist']}" if m["filelist"] else ""))
    lines.append(f"  manifest   {folder / 'manifest.json'}")
    lines.append(f"  use        {use_line(fmt, data, folder, m['n'])}")
    return "\n".join(lines) + "\n"


def run_calib(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg.target, resolve=True)
    target = plain_name(str(options["name"]), "target")  # names the set's folder: checked before any work
    fmt = calibration_format(target)
    n = calib_count(cfg, options)
    workers = _positive_int(cfg.get("workers", 1), "workers")
    if cfg.get("data") is None:
        raise UserError("calib needs an image folder: python -m zoo calib data=DIR target=vacc [n=1000]")
    spec, identity = input_of(cfg, target, fmt)
    seed = int(cfg.seed)
    sample = sample_folder(Path(str(cfg.data)), n, seed)
    folder = Path(cfg.out_dir).expanduser() / "calib" / target
    show = bool(cfg.progress) and len(sample.files) >= PROGRESS_MIN and sys.stderr.isatty()
    with progress_bar(show, len(sample.files), f"calib {target}") as tick:
        manifest = build_set(sample, folder, target, fmt, spec, seed, n, workers=workers, identity=identity,
                             on_file=tick)
    sys.stdout.write(summary(manifest, folder, fmt))
