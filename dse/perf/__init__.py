"""``evaluate(system, model, phase, plan) -> Metrics``: the heart of dse.

Pure and total: every in-range input gives finite outputs and gradients; an infeasible design
is not an error but carries negative slack (memory, SLO, power). ``phase.kind`` (a static tag)
selects the composition: training step, prefill or decode.
"""
from __future__ import annotations

from dse.perf.infer import decode_metrics, prefill_metrics
from dse.perf.metrics import Metrics
from dse.perf.train import train_metrics
from dse.specs import Model, Phase, Plan, System

_BY_KIND = {"train": train_metrics, "prefill": prefill_metrics, "decode": decode_metrics}


def evaluate(system: System, model: Model, phase: Phase, plan: Plan) -> Metrics:
    """Predict step time, throughput, memory, power and constraint slacks of one design."""
    return _BY_KIND[phase.kind](system, model, phase, plan)


__all__ = ["evaluate", "Metrics"]
