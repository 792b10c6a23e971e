"""Metrics -> the JSON object of the CLI contract (``task=evaluate``)."""
from __future__ import annotations

import math
from typing import Any, Dict

import jax
import numpy as np

from dse.perf.metrics import Metrics
from dse.specs import System


def _num(x) -> Any:
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def infeasible_reasons(m: Metrics) -> list:
    out = []
    if float(m.memory_slack_bytes) < 0:
        out.append(f"memory: needs {float(m.memory_per_chip_bytes) / 1e9:.1f} GB per chip of {float(m.memory_capacity_bytes) / 1e9:.1f} GB")
    if float(m.slo_slack_s) < 0:
        out.append(f"latency SLO missed by {-float(m.slo_slack_s) * 1e3:.2f} ms")
    if float(m.power_slack_w) < 0:
        out.append(f"power budget exceeded by {-float(m.power_slack_w) / 1e3:.1f} kW")
    for k in ("step_time_s", "tokens_per_s", "power_w"):
        if not math.isfinite(float(getattr(m, k))):
            out.append(f"{k} is not finite")
    return out


def system_summary(system: System) -> Dict[str, Any]:
    c = system.chip
    return {
        "name": system.name,
        "num_chips": int(system.num_chips),
        "peak_flops_bf16": _num(c.flops_bf16 * system.num_chips),
        "hbm_bytes": _num(c.hbm_bytes * system.num_chips),
        "hbm_bandwidth": _num(c.hbm_bw * system.num_chips),
        "power_max_w": _num(system.power_max_w),
    }


def metrics_json(m: Metrics, system: System) -> Dict[str, Any]:
    """The ``task=evaluate`` object: headline metrics (SI), breakdowns and the system summary."""
    m = jax.device_get(m)
    keys = ("step_time_s", "tokens_per_s", "tokens_per_s_per_chip", "mfu", "hfu", "memory_per_chip_bytes",
            "memory_capacity_bytes", "power_w", "tokens_per_joule", "ttft_s", "tpot_s", "max_batch",
            "memory_slack_bytes", "slo_slack_s", "power_slack_w")
    out: Dict[str, Any] = {k: _num(getattr(m, k)) for k in keys}
    reasons = infeasible_reasons(m)
    out["feasible"] = bool(not reasons)
    out["infeasible_reasons"] = reasons
    out["breakdown"] = {k: _num(v) for k, v in m.breakdown.items()}
    out["power_breakdown"] = {k: _num(v) for k, v in m.power_breakdown.items()}
    out["memory_breakdown"] = {k: _num(v) for k, v in m.memory_breakdown.items()}
    out["comm_bytes"] = {k: _num(v) for k, v in m.comm_bytes.items()}
    out["system"] = system_summary(system)
    return out
