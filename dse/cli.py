"""The one Hydra entry point: ``python -m dse task=...`` (also the ``dse`` console script).

Tasks: ``evaluate`` (one design -> metrics JSON), ``validate`` (model vs published measurements),
and those registered by other modules (search, grid, report, compare). Every task prints its
JSON result as the last line of stdout and writes it into the Hydra run directory.

Bad input never ends in a traceback: a config that does not compose (unknown preset, misspelt
key, wrong type) or does not validate (negative bandwidth, degrees that do not divide) exits with
status 2 and one line naming the field, the value and what is allowed. ``HYDRA_FULL_ERROR=1``
shows the full trace instead.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import fields
from pathlib import Path
from typing import Callable, Dict

from dse.config import CONF_DIR

import warnings

# conf/hydra/launcher/*.yaml share their names with the plugins' ConfigStore entries on purpose
# (hydra/launcher=joblib): Hydra validates them against those schemas and warns each composition.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                        category=UserWarning)
TASKS: Dict[str, Callable] = {}


def task(name: str):
    """Register a task function ``fn(cfg) -> dict`` under ``task=name``."""
    def deco(fn):
        TASKS[name] = fn
        return fn
    return deco


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def output_dir() -> Path:
    """The Hydra run directory (cwd outside Hydra)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        return Path(HydraConfig.get().runtime.output_dir)
    except Exception:
        return Path.cwd()


def write_json_atomic(path: Path, obj) -> None:
    """Write JSON to ``path`` via a temp file + rename: a reader sees all of it or nothing."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float))
    os.replace(tmp, path)


def emit(result: dict, filename: str) -> None:
    write_json_atomic(output_dir() / filename, result)
    print(json.dumps(result, default=float), flush=True)


@task("evaluate")
def evaluate_task(cfg) -> dict:
    from dse.build import build
    from dse.perf import evaluate
    from dse.report_json import metrics_json

    system, model, phase, plan = build(cfg)
    out = metrics_json(evaluate(system, model, phase, plan), system)
    out["design"] = {"hardware": cfg.hardware.name, "workload": cfg.workload.name, "phase": phase.kind,
                     "dtype": phase.dtype}
    emit(out, "metrics.json")
    return out


def _load_tasks() -> None:
    import importlib
    for mod in ("dse.validate", "dse.search.tasks", "dse.study", "dse.report"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


def run_task(cfg):
    """Hydra task function: dispatch on ``cfg.task``; returns the objective for sweepers."""
    import logging

    from dse.errors import ConfigError

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    _load_tasks()
    name = cfg.get("task")
    if name not in TASKS:
        _fail(f"task={name!r}: unknown task; allowed: {' | '.join(sorted(TASKS))}")
    try:
        out = TASKS[name](cfg)
    except ConfigError as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(str(e))
    if isinstance(out, dict):   # the objective for sweepers: 0 for an infeasible design
        obj = out.get("objective", out.get("tokens_per_joule"))
        return float(obj) if obj is not None and out.get("feasible", True) else 0.0
    return out


# ------------------------------------------------------------------------------------------------
# composition errors -> one line
# ------------------------------------------------------------------------------------------------
def _schema_keys(group: str):
    from dse import schema
    node = {"hardware": schema.HardwareConfig, "workload": schema.WorkloadConfig, "phase": schema.PhaseConfig,
            "plan": schema.PlanConfig, "chip": schema.ChipConfig, "scale_up": schema.FabricConfig,
            "scale_out": schema.FabricConfig, "efficiency": schema.EfficiencyConfig}.get(group)
    return [f.name for f in fields(node)] if node else []


def _options(group: str):
    d = Path(CONF_DIR) / group
    return sorted(p.stem for p in d.glob("*.yaml") if p.stem != "schema") if d.is_dir() else []


def explain_compose_error(e: Exception) -> str:
    """One line naming the field, the value and what is allowed, from a Hydra/OmegaConf error."""
    text = str(e)
    cause = e.__cause__ or e.__context__
    full = text + ("\n" + str(cause) if cause else "")
    m = re.search(r"Could not find '([\w/]+)/(\w+)'|In '\w+': Could not find '([\w/]+)/(\w+)'", full)
    if m:
        group, name = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        return f"{group}={name}: unknown preset; allowed: {' | '.join(_options(group))}"
    m = re.search(r"Key '(\w+)' is not in struct\s+full_key: ([\w.]+)", full)
    m2 = re.search(r"Could not override '([\w.]+)'.*?Key '(\w+)' not in", full, re.S)
    if m or m2:
        key, full_key = (m.group(1), m.group(2)) if m else (m2.group(2), m2.group(1))
        parent = full_key.split(".")[-2] if "." in full_key else full_key
        allowed = _schema_keys(parent)
        return f"{full_key}={_override_value(full_key)}: unknown key; allowed keys of {'.'.join(full_key.split('.')[:-1]) or 'config'}: {', '.join(allowed) or 'see conf/'}"
    m = re.search(r"(Value '.*?' (?:of type '\w+' )?could not be converted to \w+|Invalid value '.*?', expected one of \[.*?\]|Value '.*?' is not a valid \w+)", full, re.S)
    k = re.search(r"full_key: ([\w.]+)", full)
    if m:
        return f"{k.group(1) if k else '?'}: {' '.join(m.group(1).split())}"
    m = re.search(r"Could not override '([\w.]+)'", full)
    if m:
        return f"{m.group(1)}: {' '.join(full.split(chr(10))[1:3]).strip() or 'could not override'}"
    line = " ".join(l.strip() for l in full.splitlines() if l.strip() and "HYDRA_FULL_ERROR" not in l)
    return line[:400]


_ARGV: list = []


def _override_value(key: str) -> str:
    for a in _ARGV:
        if a.lstrip("+~").startswith(key + "="):
            return a.split("=", 1)[1]
    return "?"


def _precheck(argv) -> None:
    """Compose the single-run config once so composition errors become one-line messages."""
    if any(a.startswith("-") for a in argv):
        return  # multirun / --cfg / --help: Hydra reports itself
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [a for a in argv if not a.startswith("hydra.") and not a.startswith("hydra/")]
    _ARGV[:] = overrides
    for a in overrides:   # "+group.key=v" would append silently to a typed group: a typo must not pass
        key = a.lstrip("+").split("=", 1)[0]
        parts = key.split(".")
        if a.startswith("+") and len(parts) >= 2 and parts[0] in ("hardware", "workload", "phase", "plan"):
            allowed = _schema_keys(parts[-2])
            if allowed and parts[-1] not in allowed:
                _fail(f"{key}={a.split('=', 1)[1] if '=' in a else '?'}: unknown key; allowed keys of "
                      f"{'.'.join(parts[:-1])}: {', '.join(allowed)}")
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = compose(config_name="config", overrides=overrides)
        from omegaconf import OmegaConf
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as e:  # noqa: BLE001 - every composition error becomes one line
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(explain_compose_error(e))
    finally:
        GlobalHydra.instance().clear()


def main() -> None:
    import hydra

    from dse.schema import register_schemas

    register_schemas()
    _precheck(sys.argv[1:])
    hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)(run_task)()


if __name__ == "__main__":
    main()
