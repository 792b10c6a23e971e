"""Pieces shared by the training and inference compositions."""
from __future__ import annotations

import jax.numpy as jnp

from dse.cost import power as power_cost
from dse.specs import Phase, System


def slack(limit, value):
    """limit - value, +inf when there is no limit (limit = inf), never NaN."""
    return jnp.where(jnp.isfinite(limit), limit - value, jnp.inf)


def energy_metrics(system: System, phase: Phase, step_s, flops_per_chip, hbm_bytes_per_chip,
                   up_bytes_per_chip, out_bytes_per_chip, tokens_per_step):
    """Power at this load, tokens per joule and the power breakdown, from per-chip activity."""
    peak = system.chip.peak_flops(phase.dtype)
    br = power_cost.system_power(system, flops_per_chip / (step_s * peak), hbm_bytes_per_chip / step_s,
                                 up_bytes_per_chip / step_s, out_bytes_per_chip / step_s)
    p = br.total_w
    return p, tokens_per_step / step_s / p, dict(br._asdict())
