"""What every searcher shares: the result type and the exact batched evaluator.

``exact_scores(problem)`` returns a function mapping a batch of designs (N, D) to
(objective, ok) with ``ok`` = valid & feasible & finite. It runs ``jit(vmap(score))`` in fixed
chunks (bounded memory; one compile per chunk size), sharded over all local JAX devices when
there are several, so a GPU or a multi-device host only makes it faster.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dse.report_json import metrics_json
from dse.space import Problem


@dataclass
class SearchResult:
    searcher: str
    best: Optional[Dict[str, float]]         # design in config units (None: nothing feasible found)
    objective: float
    metrics: Optional[Dict[str, Any]]        # exact metrics JSON of the best design
    overrides: Optional[List[str]]           # the best design as Hydra overrides
    evaluations: int
    wall_s: float
    trace: List[Dict[str, float]] = field(default_factory=list)   # {"evaluations", "best"}
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {"searcher": self.searcher, "best": self.best, "objective": self.objective,
                "overrides": self.overrides, "evaluations": self.evaluations, "wall_s": self.wall_s,
                "trace": self.trace, **self.extra}


def _violation(problem: Problem, x, met):
    """Sum of normalised constraint violations (0 when feasible), +100 when the design is not real."""
    s, m, p, pl = problem.apply(x)
    def ratio(slack, scale):
        ok = jnp.isfinite(slack) & jnp.isfinite(scale) & (scale > 0)
        return jnp.where(ok, slack / jnp.where(ok, scale, 1.0), 0.0)
    slo = jnp.where(p.kind == "decode", p.tpot_slo_s, p.ttft_slo_s)
    v = (jax.nn.relu(-ratio(met.memory_slack_bytes, met.memory_capacity_bytes))
         + jax.nn.relu(-ratio(met.slo_slack_s, slo)) + jax.nn.relu(-ratio(met.power_slack_w, p.power_budget_w)))
    return v + jnp.where(problem.validity(s, p, pl), 0.0, 100.0)


def _score_fn(problem: Problem):
    def one(x):
        obj, ok, met = problem.score(x)
        score = jnp.where(ok, obj, -jnp.inf)
        # merit orders every design: feasible ones by objective, the others by how far off they are
        merit = jnp.where(ok, jnp.log(jnp.maximum(obj, 1e-30)), -1e3 - _violation(problem, x, met))
        return score, ok, jnp.where(jnp.isfinite(merit), merit, -1e9)
    return jax.vmap(one)


def exact_scores(problem: Problem, chunk: int = 65536):
    """Batched exact evaluator: designs (N, D) float -> (scores with -inf where not ok, ok, merit)."""
    devices = jax.local_devices()
    nd = len(devices)
    chunk = max(nd, (chunk // nd) * nd)
    f = jax.jit(_score_fn(problem))
    sharding = NamedSharding(Mesh(np.array(devices), ("d",)), PartitionSpec("d")) if nd > 1 else None

    def run(designs: np.ndarray):
        designs = np.asarray(designs, dtype=np.float32)
        n = designs.shape[0]
        if n == 0:
            return np.zeros(0), np.zeros(0, bool), np.zeros(0)
        # pad short batches to a power of two: a handful of compiled sizes instead of one per length
        size = chunk if n >= chunk else max(nd, int(2 ** np.ceil(np.log2(max(n, 1)))))
        size = int(np.ceil(size / nd) * nd)
        scores, oks, merits = [], [], []
        for start in range(0, n, size):
            part = designs[start:start + size]
            pad = size - part.shape[0]
            if pad:
                part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
            x = jax.device_put(part, sharding) if sharding is not None else part
            s, ok, mr = (np.asarray(a)[:size - pad] for a in f(x))
            scores.append(s); oks.append(ok); merits.append(mr)
        return np.concatenate(scores), np.concatenate(oks), np.concatenate(merits)
    return run


def finish(problem: Problem, searcher: str, best_x, best_obj, evaluations, t0, trace, **extra) -> SearchResult:
    """Exact metrics of the winner, through the same validated build path as ``task=evaluate``."""
    from dse.build import build
    from dse.config import compose_config
    from dse.perf import evaluate

    wall = time.perf_counter() - t0
    if best_x is None or not np.isfinite(best_obj):
        return SearchResult(searcher, None, float("nan"), None, None, int(evaluations), wall, trace, extra)
    ov = problem.overrides(best_x)
    s, m, p, pl = build(compose_config(ov))
    met = metrics_json(evaluate(s, m, p, pl), s)
    if not met["feasible"]:   # never report an infeasible design as the answer
        return SearchResult(searcher, None, float("nan"), None, None, int(evaluations), wall, trace,
                            {**extra, "rejected": problem.design_dict(best_x)})
    return SearchResult(searcher, problem.design_dict(best_x), float(met[problem.space.objective]), met, ov,
                        int(evaluations), wall, trace, extra)
