"""Sensitivities at a design: d(objective)/d(every numeric hardware field), in natural units.

``jax.grad`` of the objective with respect to the whole ``System`` pytree, mapped back to config
fields: the derivative per config unit (``+1 GB/s of scale-up bandwidth per chip is worth +x
tokens/J``) and the elasticity (% change of the objective per % change of the field).
"""
from __future__ import annotations

from typing import Dict

import jax
import numpy as np

from dse.perf import evaluate
from dse.space import FIELD_MAP

UNIT_NAMES = {"tokens_per_joule": "tokens/J", "tokens_per_s": "tokens/s", "tokens_per_s_per_chip": "tokens/s per chip"}


def sensitivities(system, model, phase, plan, objective: str = "tokens_per_joule") -> Dict[str, Dict]:
    """{config field: {value, unit, d_objective_per_unit, elasticity}} for every hardware field."""
    f = lambda s: getattr(evaluate(s, model, phase, plan), objective)
    obj = float(f(system))
    g = jax.grad(f)(system)
    parts = {"system": (system, g), "chip": (system.chip, g.chip), "scale_up": (system.scale_up, g.scale_up),
             "scale_out": (system.scale_out, g.scale_out)}
    out = {}
    for field, (part, leaf, scale, unit) in FIELD_MAP.items():
        if not field.startswith("hardware."):
            continue
        spec, grad = parts[part]
        v_si, d_si = float(getattr(spec, leaf)), float(getattr(grad, leaf))
        if not np.isfinite(d_si):
            continue
        out[field] = {"value": v_si / scale, "unit": unit, "d_objective_per_unit": d_si * scale,
                      "elasticity": (d_si * v_si / obj) if obj else 0.0,
                      "text": f"+1 {unit or 'unit'} of {field} is worth {d_si * scale:+.4g} {UNIT_NAMES.get(objective, objective)}"}
    return out
