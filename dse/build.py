"""From a composed config to the four specs ``evaluate`` takes, with build-time validation."""
from __future__ import annotations

from typing import Tuple

from dse.errors import ConfigError
from dse.specs import Model, Phase, Plan, System


def build(cfg) -> Tuple[System, Model, Phase, Plan]:
    """Validate the config and build ``(system, model, phase, plan)``.

    Raises :class:`ConfigError` naming the field, the value and what is allowed.
    """
    system = System.from_config(cfg.hardware)
    model = Model.from_config(cfg.workload)
    phase = Phase.from_config(cfg.phase)
    if float(system.chip.peak_flops(phase.dtype)) <= 0:
        ok = [d for d in ("bf16", "fp8", "int8") if float(system.chip.peak_flops(d)) > 0]
        raise ConfigError("phase.dtype", phase.dtype, f"{' | '.join(ok)} (hardware {system.name} has no {phase.dtype})")
    plan = Plan.from_config(cfg.plan, system, model, phase)
    return system, model, phase, plan
