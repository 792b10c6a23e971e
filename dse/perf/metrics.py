"""``Metrics``: everything ``evaluate`` returns, as a pytree of SI arrays."""
from __future__ import annotations

from typing import Dict

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Metrics:
    step_time_s: jnp.ndarray            # train: one optimizer step; prefill: the batch; decode: one step
    tokens_per_s: jnp.ndarray           # whole system
    tokens_per_s_per_chip: jnp.ndarray
    mfu: jnp.ndarray                    # model FLOPs (no recompute) / (time x chips x peak of dtype)
    hfu: jnp.ndarray                    # hardware FLOPs executed / (time x chips x peak)
    memory_per_chip_bytes: jnp.ndarray
    memory_capacity_bytes: jnp.ndarray
    power_w: jnp.ndarray                # whole system at this load
    tokens_per_joule: jnp.ndarray
    ttft_s: jnp.ndarray                 # prefill (nan otherwise)
    tpot_s: jnp.ndarray                 # decode (nan otherwise)
    max_batch: jnp.ndarray              # inference: sequences that fit in memory (nan for train)
    memory_slack_bytes: jnp.ndarray     # >= 0 when it fits
    slo_slack_s: jnp.ndarray            # >= 0 when the TPOT/TTFT SLO holds (inf when none)
    power_slack_w: jnp.ndarray          # >= 0 under the power budget (inf when none)
    breakdown: Dict[str, jnp.ndarray]          # seconds per component of step_time_s
    power_breakdown: Dict[str, jnp.ndarray]    # watts per component of power_w
    memory_breakdown: Dict[str, jnp.ndarray]   # bytes per component of memory_per_chip_bytes
    comm_bytes: Dict[str, jnp.ndarray]         # bytes sent per chip per step on each tier

    @property
    def feasible(self) -> jnp.ndarray:
        """All constraint slacks non-negative and every headline number finite."""
        ok = (self.memory_slack_bytes >= 0) & (self.slo_slack_s >= 0) & (self.power_slack_w >= 0)
        finite = jnp.isfinite(self.step_time_s) & jnp.isfinite(self.power_w) & jnp.isfinite(self.tokens_per_s)
        return ok & finite
