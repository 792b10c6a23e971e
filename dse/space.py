"""Design spaces: which fields are free, their candidate values, and the map to specs.

A space (``conf/space/*.yaml``) names a base configuration (Hydra overrides), an objective to
maximise, and free *variables*. Each variable is a config field (``plan.tp``,
``hardware.scale_up.gb_s``, ...) or one of two derived knobs (``phase.batch_per_chip``: inference
batch = value x chips; ``plan.ep_share``: ep = value x chips) with a finite list of candidate
values (the grid) and a kind:

* ``discrete``: a degree or choice; the gradient search relaxes it with logits over the candidates
  (expected value under a tempered softmax), rounding back to the most likely candidate;
* ``continuous``: a positive hardware knob searched in log space between the smallest and the
  largest candidate; the candidates are the grid the exhaustive search uses.

A *design* is a vector of values in config units, one per variable. ``apply`` puts a design into
the base specs (traced, so it ``vmap``s and ``grad``s); ``dp`` follows as
chips / (tp x pp x cp). ``validity`` tells whether a design is real: integer degrees that divide
heads, layers, experts and the chip count; batches that split. Fields coupled to a knob (optics
count and switch power of a tier whose bandwidth is a knob) scale in proportion with it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dse.build import build
from dse.config import compose_config
from dse.errors import ConfigError
from dse.perf import Metrics, evaluate
from dse.specs import RECOMPUTE_LEVEL, Model, Phase, Plan, System

# config field -> (spec part, leaf, scale from config units to SI, unit label)
FIELD_MAP: Dict[str, Tuple[str, str, float, str]] = {
    "hardware.num_chips": ("system", "num_chips", 1.0, "chips"),
    "hardware.host_w_per_chip": ("system", "host_w_per_chip", 1.0, "W"),
    "hardware.pue": ("system", "pue", 1.0, ""),
    "hardware.chip.bf16_tflops": ("chip", "flops_bf16", 1e12, "TFLOP/s"),
    "hardware.chip.fp8_tflops": ("chip", "flops_fp8", 1e12, "TFLOP/s"),
    "hardware.chip.int8_tops": ("chip", "flops_int8", 1e12, "TOP/s"),
    "hardware.chip.hbm_gb": ("chip", "hbm_bytes", 1e9, "GB"),
    "hardware.chip.hbm_tb_s": ("chip", "hbm_bw", 1e12, "TB/s"),
    "hardware.chip.tdp_w": ("chip", "tdp_w", 1.0, "W"),
    "hardware.chip.idle_w": ("chip", "idle_w", 1.0, "W"),
    "hardware.chip.hbm_pj_per_bit": ("chip", "hbm_j_per_byte", 8e-12, "pJ/bit"),
    "plan.tp": ("plan", "tp", 1.0, ""), "plan.pp": ("plan", "pp", 1.0, ""), "plan.dp": ("plan", "dp", 1.0, ""),
    "plan.ep": ("plan", "ep", 1.0, ""), "plan.cp": ("plan", "cp", 1.0, ""),
    "plan.microbatch": ("plan", "microbatch", 1.0, "sequences"), "plan.vpp": ("plan", "vpp", 1.0, ""),
    "plan.zero": ("plan", "zero", 1.0, ""), "plan.recompute": ("plan", "recompute", 1.0, ""),
    "plan.sp": ("plan", "sp", 1.0, ""), "plan.ep_overlap": ("plan", "ep_overlap", 1.0, ""),
    "plan.dp_overlap": ("plan", "dp_overlap", 1.0, ""), "plan.redundant_experts": ("plan", "redundant_experts", 1.0, ""),
    "phase.batch": ("phase", "batch", 1.0, "sequences"), "phase.global_batch": ("phase", "global_batch", 1.0, "sequences"),
    "phase.context_len": ("phase", "context_len", 1.0, "tokens"), "phase.seq_len": ("phase", "seq_len", 1.0, "tokens"),
}
for _tier in ("scale_up", "scale_out"):
    FIELD_MAP.update({
        f"hardware.{_tier}.gb_s": (_tier, "bw", 1e9, "GB/s"),
        f"hardware.{_tier}.latency_us": (_tier, "latency_s", 1e-6, "us"),
        f"hardware.{_tier}.domain_size": (_tier, "domain_size", 1.0, "chips"),
        f"hardware.{_tier}.optics_per_chip": (_tier, "optics_per_chip", 1.0, "modules"),
        f"hardware.{_tier}.optic_w": (_tier, "optic_w", 1.0, "W"),
        f"hardware.{_tier}.switch_w_per_chip": (_tier, "switch_w_per_chip", 1.0, "W"),
        f"hardware.{_tier}.pj_per_bit": (_tier, "j_per_byte", 8e-12, "pJ/bit"),
    })
VIRTUAL = ("phase.batch_per_chip", "plan.ep_share")
OBJECTIVES = ("tokens_per_joule", "tokens_per_s", "tokens_per_s_per_chip")
CHOICE_VALUES = {"plan.recompute": RECOMPUTE_LEVEL, "plan.sp": {"false": 0.0, "true": 1.0, False: 0.0, True: 1.0}}


@dataclass(frozen=True)
class Variable:
    field: str
    values: Tuple[float, ...]       # candidates in config units (sorted)
    kind: str = "discrete"          # discrete | continuous

    @property
    def low(self):
        return self.values[0]

    @property
    def high(self):
        return self.values[-1]


@dataclass(frozen=True)
class Space:
    name: str
    base: Tuple[str, ...]
    variables: Tuple[Variable, ...]
    objective: str = "tokens_per_joule"
    max_chips: float = math.inf
    couple: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    @property
    def fields(self) -> List[str]:
        return [v.field for v in self.variables]

    @property
    def size(self) -> int:
        return int(np.prod([len(v.values) for v in self.variables]))


def _value(fieldname: str, v) -> float:
    """A candidate value in config units; named choices (recompute, sp) map to their levels."""
    table = CHOICE_VALUES.get(fieldname)
    if table is not None and isinstance(v, (str, bool)):
        key = v if isinstance(v, bool) else str(v)
        if key not in table:
            raise ConfigError(f"space.variables.{fieldname}", v, " | ".join(str(k) for k in table if isinstance(k, str)))
        return float(table[key])
    if isinstance(v, (str, bool)) or not isinstance(v, (int, float)):
        raise ConfigError(f"space.variables.{fieldname}", v, "a number")
    return float(v)


def space_from_config(cfg) -> Space:
    """Validate a ``space`` config node and build a :class:`Space`."""
    if cfg is None:
        raise ConfigError("space", None, "a space preset (space=<name>; see conf/space/)")
    name = str(cfg.get("name", "space"))
    objective = str(cfg.get("objective", "tokens_per_joule"))
    if objective not in OBJECTIVES:
        raise ConfigError("space.objective", objective, " | ".join(OBJECTIVES))
    raw = cfg.get("variables") or []
    if not raw:
        raise ConfigError("space.variables", [], "a non-empty list of {field, values, kind}")
    variables = []
    for i, v in enumerate(raw):
        f = v.get("field")
        if f not in FIELD_MAP and f not in VIRTUAL:
            raise ConfigError(f"space.variables[{i}].field", f, "one of " + ", ".join(sorted(FIELD_MAP) + list(VIRTUAL)))
        kind = str(v.get("kind", "discrete"))
        if kind not in ("discrete", "continuous"):
            raise ConfigError(f"space.variables[{i}].kind", kind, "discrete | continuous")
        if v.get("values") is not None:
            vals = [_value(f, x) for x in v["values"]]
        else:
            lo, hi, n = v.get("low"), v.get("high"), v.get("num", 8)
            if lo is None or hi is None:
                raise ConfigError(f"space.variables[{i}]", f, "either values: [...] or low/high/num")
            lo, hi, n = float(lo), float(hi), int(n)
            if not (0 < lo < hi) or n < 2:
                raise ConfigError(f"space.variables[{i}].low/high/num", f"{lo}/{hi}/{n}", "0 < low < high and num >= 2")
            vals = list(np.geomspace(lo, hi, n))
        if not vals:
            raise ConfigError(f"space.variables[{i}].values", [], "a non-empty list")
        if any(not math.isfinite(x) for x in vals) or (kind == "continuous" and min(vals) <= 0):
            raise ConfigError(f"space.variables[{i}].values", vals, "finite numbers (> 0 for continuous knobs)")
        if len(set(vals)) != len(vals):
            raise ConfigError(f"space.variables[{i}].values", vals, "distinct values")
        variables.append(Variable(f, tuple(sorted(vals)), kind))
    if len({v.field for v in variables}) != len(variables):
        raise ConfigError("space.variables", [v.field for v in variables], "each field at most once")
    couple = tuple((str(k), tuple(str(x) for x in vs)) for k, vs in (cfg.get("couple") or {}).items())
    max_chips = cfg.get("max_chips")
    return Space(name=name, base=tuple(str(x) for x in cfg.get("base") or ()), variables=tuple(variables),
                 objective=objective, max_chips=math.inf if max_chips is None else float(max_chips), couple=couple)


# ------------------------------------------------------------------------------------------------
# designs -> specs
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A space bound to its base specs: everything a searcher needs."""
    space: Space
    system: System
    model: Model
    phase: Phase
    plan: Plan

    @classmethod
    def from_space(cls, space: Space, extra_overrides: Sequence[str] = ()) -> "Problem":
        s, m, p, pl = build(compose_config(list(space.base) + list(extra_overrides)))
        return cls(space, s, m, p, pl)

    # -- the map ---------------------------------------------------------------------------------
    def apply(self, x) -> Tuple[System, Model, Phase, Plan]:
        """Put design ``x`` (values in config units, one per variable) into the base specs."""
        parts = {"system": self.system, "chip": self.system.chip, "scale_up": self.system.scale_up,
                 "scale_out": self.system.scale_out, "plan": self.plan, "phase": self.phase}
        set_ = {k: {} for k in parts}
        virtual = {}
        for i, var in enumerate(self.space.variables):
            if var.field in VIRTUAL:
                virtual[var.field] = x[i]
                continue
            part, leaf, scale, _ = FIELD_MAP[var.field]
            set_[part][leaf] = x[i] * scale
            for coupled in dict(self.space.couple).get(var.field, ()):
                cpart, cleaf, _, _ = FIELD_MAP[coupled]
                base_knob = getattr(parts[part], leaf)
                set_[cpart][cleaf] = getattr(parts[cpart], cleaf) * (x[i] * scale) / base_knob
        sys_parts = {k: parts[k].replace(**v) if v else parts[k] for k, v in set_.items()}
        system = sys_parts["system"].replace(chip=sys_parts["chip"], scale_up=sys_parts["scale_up"],
                                             scale_out=sys_parts["scale_out"])
        plan, phase = sys_parts["plan"], sys_parts["phase"]
        n = system.num_chips
        if "plan.ep_share" in virtual:
            plan = plan.replace(ep=virtual["plan.ep_share"] * n)
        if "phase.batch_per_chip" in virtual:
            phase = phase.replace(batch=virtual["phase.batch_per_chip"] * n)
        if "plan.dp" not in self.space.fields:
            plan = plan.replace(dp=n / (plan.tp * plan.pp * plan.cp))
        return system, self.model, phase, plan

    def validity(self, system: System, phase: Phase, plan: Plan):
        """True where the (exact) design is a real configuration."""
        m = self.model
        isint = lambda a: jnp.abs(a - jnp.round(a)) < 1e-6
        divides = lambda a, b: isint(b / a)
        ok = isint(plan.dp) & (plan.dp >= 1) & isint(plan.ep) & (plan.ep >= 1)
        ok &= divides(plan.tp, m.heads) & (divides(plan.tp, m.kv_heads) | divides(m.kv_heads, plan.tp))
        ok &= divides(plan.pp * plan.vpp, m.layers)
        ok &= jnp.abs(plan.dp * plan.tp * plan.pp * plan.cp - system.num_chips) < 1e-3
        ok &= divides(plan.ep, plan.dp * plan.tp * plan.cp)
        ok &= jnp.where(m.experts > 0, plan.ep <= m.experts + plan.redundant_experts, plan.ep == 1)
        if phase.kind == "train":
            ok &= divides(plan.dp * plan.microbatch, phase.global_batch) & divides(plan.cp, phase.seq_len)
        else:
            ok &= (phase.batch >= plan.dp) & (plan.cp == 1) & isint(phase.batch)
        ok &= system.num_chips <= self.space.max_chips
        return ok

    def score(self, x):
        """(objective, feasible & valid, metrics) of exact design ``x``."""
        s, m, p, pl = self.apply(x)
        met = evaluate(s, m, p, pl)
        obj = getattr(met, self.space.objective)
        ok = self.validity(s, p, pl) & met.feasible & jnp.isfinite(obj)
        return obj, ok, met

    def overrides(self, x) -> List[str]:
        """The design as Hydra overrides (config units) on top of the base."""
        out = list(self.space.base)
        vals = dict(zip(self.space.fields, [float(v) for v in x]))
        chips = vals.get("hardware.num_chips", float(self.system.num_chips))
        for f, v in vals.items():
            if f == "phase.batch_per_chip":
                out.append(f"phase.batch={int(round(v * chips))}")
            elif f == "plan.ep_share":
                out.append(f"plan.ep={int(round(v * chips))}")
            elif f == "plan.recompute":
                out.append(f"plan.recompute={ {0.0: 'none', 1.0: 'selective', 2.0: 'full'}[v] }")
            elif f == "plan.sp":
                out.append(f"plan.sp={'true' if v else 'false'}")
            elif FIELD_MAP[f][2] == 1.0 and float(v).is_integer():
                out.append(f"{f}={int(v)}")
            else:
                out.append(f"{f}={v:.6g}")
            for coupled in dict(self.space.couple).get(f, ()):
                part, leaf, scale, _ = FIELD_MAP[f]
                cpart, cleaf, cscale, _ = FIELD_MAP[coupled]
                parts = {"system": self.system, "chip": self.system.chip, "scale_up": self.system.scale_up,
                         "scale_out": self.system.scale_out}
                ratio = v * scale / float(getattr(parts[part], leaf))
                out.append(f"{coupled}={float(getattr(parts[cpart], cleaf)) * ratio / cscale:.6g}")
        if "plan.dp" not in vals:
            tp, pp = vals.get("plan.tp", float(self.plan.tp)), vals.get("plan.pp", float(self.plan.pp))
            cp = vals.get("plan.cp", float(self.plan.cp))
            out.append(f"plan.dp={int(round(chips / (tp * pp * cp)))}")
        return out

    def design_dict(self, x) -> Dict[str, float]:
        return {f: float(v) for f, v in zip(self.space.fields, x)}

    def candidates(self) -> List[np.ndarray]:
        return [np.asarray(v.values, dtype=np.float64) for v in self.space.variables]

    def index_to_design(self, idx) -> np.ndarray:
        """Integer candidate indices (N, D) -> design values (N, D)."""
        idx = np.asarray(idx)
        return np.stack([c[idx[..., i]] for i, c in enumerate(self.candidates())], axis=-1).astype(np.float32)
