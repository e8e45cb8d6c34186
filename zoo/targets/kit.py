"""Shared parts of the build-kit targets (vamc, hb_mapper): vendor compilers that rarely install here.

A kit target writes everything the vendor's compiler needs, checks it, and runs the compiler only
when its executable is on PATH. This module finds and runs that executable (logging its output into
the kit), checks a config file against the vendor's key set, and checks that the kit's relative
paths stay inside the kit. It never writes a compiler output itself.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zoo.converters.onnx_canonical import external_data_name
from zoo.errors import UserError
from zoo.store import link_or_copy
from zoo.targets.base import Built, Check, TargetJob

LOG_DIR = "build_logs"  # where the compiler's own console output is kept, inside the kit
CALIBRATION_NOTE = "CALIBRATION.md"  # the kit's calibration provenance, for kits that have no README of their own


@dataclass
class ToolRun:
    """One run of a vendor command."""

    command: str  # as a user types it, from the kit folder
    returncode: int
    log: Path
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def find_tool(name: str) -> Optional[str]:
    """The executable's path when it is on PATH, else None."""
    return shutil.which(name)


# A kit's own instructions. Not README.md: publishing an artifact writes its model card under that name.
KIT_README = "KIT.md"


def device_listed(tool: str, expect: str = "") -> bool:
    """Whether a device management tool (``ixsmi``, ``nvidia-smi``) lists a device with ``-L``."""
    exe = shutil.which(tool)
    if not exe:
        return False
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip()) and expect in proc.stdout


def command_line(argv: Sequence[str]) -> str:
    return shlex.join([str(a) for a in argv])


def compiler_label(tool: str, path: Optional[str]) -> str:
    """What ``Built.compiler`` says: the tool, and whether it was found (no machine paths)."""
    return f"{tool} (found on PATH)" if path else f"{tool} (not installed)"


def copy_onnx(src: Path, dst: Path) -> Path:
    """Put the build's canonical ONNX model, and the external data file it references by name if it
    has one, at ``dst``: hard links where possible (the work copy is deleted after the build, so a
    3 GiB model is not written twice), else copies."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    link_or_copy(src, dst)
    data = src.with_name(external_data_name(src))
    if data.exists():
        # The model refers to its data file by the name it was saved with: keep that name.
        link_or_copy(data, dst.with_name(data.name))
    return dst


def log_tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:]) if text else "(no output)"


def run_tool(executable: str, args: Sequence[str], cwd: Path, log_name: str, timeout_s: float) -> ToolRun:
    """Run ``executable args`` in ``cwd`` with its output kept in ``cwd/build_logs/<log_name>``."""
    log = cwd / LOG_DIR / log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "wb") as out:
        try:
            rc = subprocess.run([executable, *args], cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\n[stopped after {timeout_s:g} s]\n".encode())
            rc = -1
    name = Path(executable).name
    return ToolRun(command_line([name, *args]), rc, log, time.monotonic() - start)


def run_steps(executable: str, steps: Sequence[Tuple[Sequence[str], str]], cwd: Path,
              timeout_s: float) -> Tuple[List[ToolRun], List[Check]]:
    """Run each (args, log name) in order, stopping at the first failure; one Check per step run."""
    runs: List[ToolRun] = []
    checks: List[Check] = []
    for args, log_name in steps:
        run = run_tool(executable, args, cwd, log_name, timeout_s)
        runs.append(run)
        rel_log = run.log.relative_to(cwd).as_posix()
        detail = (f"exit 0 in {run.seconds:.1f} s; log {rel_log}" if run.ok
                  else f"exit {run.returncode}; log {rel_log}: {log_tail(run.log)}")
        checks.append(Check(f"`{run.command}` succeeded", run.ok, detail))
        if not run.ok:
            break
    return runs, checks


@dataclass
class CompilerRun:
    """What came of offering a kit to its vendor compiler."""

    label: str  # for ``Built.compiler``
    ran: bool
    ok: bool  # every step exited 0
    checks: List[Check]
    version: Optional[Dict[str, Any]] = None  # tool_version() of the compiler found on PATH


VERSION_TIMEOUT_S = 60


def tool_version(exe: str) -> Dict[str, Any]:
    """The compiler's record for the manifest: its path and the first line ``exe --version`` prints.

    Vendors print their version differently (and some not for ``--version``), so what was printed is kept
    as it is, with the exit code; ``version`` is that line only when the tool exited 0."""
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"path": exe, "version": None, "printed": "", "error": type(e).__name__}
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines() if line.strip()]
    first = lines[0][:200] if lines else ""
    return {"path": exe, "version": first if proc.returncode == 0 and first else None, "printed": first,
            "exit_code": proc.returncode}


def run_compiler(tool: str, steps: Sequence[Tuple[Sequence[str], str]], kit: Path, timeout_s: float,
                 kit_checks: Sequence[Check]) -> CompilerRun:
    """Run the steps from the kit folder when ``tool`` is on PATH and the kit passed its own checks."""
    exe = find_tool(tool)
    version = tool_version(exe) if exe is not None else None
    if exe is None or first_failure(kit_checks) is not None:  # never feed the compiler a kit that failed its checks
        return CompilerRun(compiler_label(tool, exe), False, False, [], version)
    runs, checks = run_steps(exe, steps, kit, timeout_s)
    ok = len(runs) == len(steps) and all(r.ok for r in runs)
    return CompilerRun(compiler_label(tool, exe), True, ok, checks, version)


def kit_files(root: Path) -> List[Path]:
    """Every file of the kit; hidden entries (the pipeline's ``.work`` scratch folder) are not shipped."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def files_under(root: Path) -> List[Path]:
    return kit_files(root) if root.is_dir() else []


# --- config schema checks ------------------------------------------------------------------------
# A schema is a dict of key -> expected: a type (or tuple of types), a nested dict, a one-element
# list [elem] for a list of elem, or Seq([...]) for a fixed sequence of positional schemas.


class Seq(list):
    """A list whose items each have their own schema, in order."""


def _type_name(t: Any) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return getattr(t, "__name__", str(t))


def _is_instance(value: Any, expected: Any) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False  # YAML true/false must not pass for a number
    if isinstance(value, int) and float in types:
        return True  # 1 is a fine float in YAML
    return isinstance(value, types)


def schema_errors(value: Any, schema: Any, where: str = "") -> List[str]:
    """Every way ``value`` differs from ``schema``: missing or unexpected keys, wrong types."""
    at = where or "(top level)"
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{at}: expected a mapping, got {type(value).__name__}"]
        errors = [f"{where + '.' if where else ''}{k}: missing" for k in schema if k not in value]
        errors += [f"{where + '.' if where else ''}{k}: unexpected key" for k in value if k not in schema]
        for k in schema:
            if k in value:
                errors += schema_errors(value[k], schema[k], f"{where + '.' if where else ''}{k}")
        return errors
    if isinstance(schema, Seq):
        if not isinstance(value, list) or len(value) != len(schema):
            return [f"{at}: expected a list of {len(schema)} items"]
        return [e for i, (v, s) in enumerate(zip(value, schema)) for e in schema_errors(v, s, f"{where}[{i}]")]
    if isinstance(schema, list):
        if not isinstance(value, list) or not value:
            return [f"{at}: expected a non-empty list"]
        return [e for i, v in enumerate(value) for e in schema_errors(v, schema[0], f"{where}[{i}]")]
    if not _is_instance(value, schema):
        return [f"{at}: expected {_type_name(schema)}, got {type(value).__name__} {value!r}"]
    return []


def schema_check(name: str, value: Any, schema: Any) -> Check:
    errors = schema_errors(value, schema)
    detail = "; ".join(errors) if errors else "every key present, none unknown, types as expected"
    return Check(name, not errors, detail)


def inside_kit_check(name: str, kit: Path, rel: str, is_dir: bool = False) -> Check:
    """A path written in a kit config is relative, resolves inside the kit, and exists."""
    target = (kit / rel).resolve()
    inside = not Path(rel).is_absolute() and target.is_relative_to(kit.resolve())
    exists = target.is_dir() if is_dir else target.is_file()
    return Check(name, inside and exists, f"{rel} -> {'inside' if inside else 'OUTSIDE'} the kit, "
                                          f"{'exists' if exists else 'missing'}")


def first_failure(checks: Sequence[Check]) -> Optional[Check]:
    return next((c for c in checks if not c.passed), None)


def option_choice(options: Dict[str, Any], key: str, choices: Sequence[str]) -> str:
    """``options[key]`` as a string, or a one-line UserError naming the valid choices."""
    value = str(options.get(key))
    if value not in choices:
        raise UserError(f"target.{key}={value}: choose one of {', '.join(choices)}")
    return value


def require_batch_one(options: Dict[str, Any], tool: str) -> None:
    batch = options.get("batch", 1)
    if str(batch) != "1":
        raise UserError(f"target.batch={batch}: {tool} takes a static batch-1 model; use target.batch=1 "
                        f"(the device runtime batches at run time)")


def require_rgb_nchw(spec: Any, tool: str) -> None:
    """The kits describe an RGB, NCHW network input; anything else needs a different vendor config."""
    if spec.color.value != "RGB" or spec.layout.value != "NCHW":
        raise UserError(f"{tool} kits are written for RGB NCHW inputs; this model takes "
                        f"{spec.color.value} {spec.layout.value}")


def describe_kit(tool: str, built: Built, kit: Path) -> List[str]:
    """Summary lines shared by the kit targets: what the kit holds, and what ran or is left to run."""
    failed = first_failure(built.checks)
    if built.compiled:
        lines = [f"compiled with {tool}: {built.primary.relative_to(kit).as_posix()}"]
    elif built.info.get("compiler_ran"):
        lines = [f"{tool} ran and failed ({failed.name}: {failed.detail})" if failed else f"{tool} produced nothing"]
    else:
        lines = [f"kit ready; {built.compiler}: the compiler was not run. On a machine that has it, "
                 f"from {built.info.get('run_from', 'the kit folder')}:"]
        lines += [f"  $ {c}" for c in built.commands]
    if built.info.get("device_run"):
        lines.append(f"on the device: {built.info['device_run']}")
    return lines


# --- calibration provenance in the kit -------------------------------------------------------------


def calibration_record(job: TargetJob, method: Optional[str]) -> Optional[Dict[str, Any]]:
    """The record the manifest will hold for the images this job has drawn (None: it drew none)."""
    cal = job.calibration
    return cal.record(method) if cal is not None and cal.used else None


def calibration_section(record: Optional[Dict[str, Any]], job: TargetJob, target: str) -> List[str]:
    """A kit README's "Calibration" section: where the int8 ranges come from and, for generated images,
    that the kit's int8 accuracy is unknown and how to rebuild it on real data. Empty without a record."""
    from zoo.calibration import describe, is_generated

    if not record:
        return []
    lines = ["## Calibration", "", describe(record)]
    if is_generated(record):
        rebuild = command_line(["python", "-m", "zoo", "convert", f"model={job.variant.name}",
                                f"source={job.weights.source}", f"tag={job.weights.tag}", f"target={target}",
                                f"precision={job.precision}", "calib_data=DIR"])
        lines += ["", "**Warning: the int8 accuracy of this kit is unknown.** Its calibration images are seeded "
                  "generated images, not real data: enough to check the build path, not to set int8 ranges a "
                  "deployment can trust. Rebuild the kit from a folder of real images (an ImageFolder tree, "
                  "every class represented) by adding `calib_data=DIR` to the command that built it "
                  "(with the same `weights=`), e.g.:", "", f"    {rebuild}"]
    return lines


def write_calibration_note(job: TargetJob, target: str, method: str) -> Optional[Path]:
    """``CALIBRATION.md`` in the kit (the calibration section alone), when the job drew calibration images."""
    lines = calibration_section(calibration_record(job, method), job, target)
    if not lines:
        return None
    path = job.stage / CALIBRATION_NOTE
    path.write_text("\n".join([f"# {job.variant.name} {target} {job.precision} kit: calibration", "", *lines]) + "\n")
    return path
