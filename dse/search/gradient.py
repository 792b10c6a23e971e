"""Gradient search: optax over a relaxed design, then rounding and an exact local polish.

Relaxation. A continuous knob with candidates in [lo, hi] is ``lo (hi/lo)^sigmoid(u)``; a discrete
variable is the expected value of its candidates under ``softmax(logits / T)``. The cost model
accepts fractional degrees, so the relaxed design is evaluated by the same ``evaluate``.

Loss (per start) = -log(objective) + mu * sum_c relu(-slack_c / scale_c)^2 over the memory, SLO,
power-budget and chip-budget constraints. ``S`` starts run in one vmapped batch through a
``lax.scan`` of Adam steps while the temperature anneals T0 -> T1 and the penalty mu0 -> mu1
(geometrically), so designs harden towards candidates as constraints tighten.

Rounding takes each start's most likely candidate (continuous knobs: the nearest grid value in log
space). The polish is an exact greedy neighbourhood search from the best rounded designs: all
candidates of each single variable (a line search); when that stalls, all pairs of one-step moves;
when those stall, ridge moves (a discrete variable one step, a continuous knob anywhere), each tier
evaluated exactly in one batch, moving to the best improvement until none is left; then, while the budget
lasts, an iterated local search kicks 2-3 variables of the incumbent (seeded) and descends again.
Only valid, feasible designs can win; evaluations count relaxed steps (one per start per step) and
every distinct exact design evaluated.
"""
from __future__ import annotations

import itertools
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dse.perf import evaluate
from dse.search.common import SearchResult, exact_scores, finish
from dse.space import Problem


def _relaxed_design(problem: Problem, params, temperature):
    xs = []
    for var, prm in zip(problem.space.variables, params):
        vals = jnp.asarray(var.values, dtype=jnp.float32)
        if var.kind == "continuous":
            lo, hi = jnp.log(vals[0]), jnp.log(vals[-1])
            xs.append(jnp.exp(lo + (hi - lo) * jax.nn.sigmoid(prm)))
        else:
            xs.append(jnp.sum(jax.nn.softmax(prm / temperature) * vals))
    return jnp.stack(xs)


def _safe_ratio(slack, scale):
    ok = jnp.isfinite(slack) & jnp.isfinite(scale) & (scale > 0)
    return jnp.where(ok, slack / jnp.where(ok, scale, 1.0), 0.0)


def relaxed_loss(problem: Problem, params, temperature, mu):
    """-log(objective) + mu * squared constraint violations of the relaxed design."""
    x = _relaxed_design(problem, params, temperature)
    s, m, p, pl = problem.apply(x)
    met = evaluate(s, m, p, pl)
    obj = getattr(met, problem.space.objective)
    slo_scale = jnp.where(p.kind == "decode", p.tpot_slo_s, p.ttft_slo_s)
    viol = [jax.nn.relu(-_safe_ratio(met.memory_slack_bytes, met.memory_capacity_bytes)),
            jax.nn.relu(-_safe_ratio(met.slo_slack_s, slo_scale)),
            jax.nn.relu(-_safe_ratio(met.power_slack_w, p.power_budget_w)),
            jax.nn.relu(_safe_ratio(s.num_chips - problem.space.max_chips, jnp.float32(problem.space.max_chips)))]
    pen = sum(v ** 2 for v in viol)
    return -jnp.log(jnp.maximum(obj, 1e-30)) + mu * pen


def _init_params(problem: Problem, key, starts):
    params = []
    for var in problem.space.variables:
        key, sub = jax.random.split(key)
        shape = (starts,) if var.kind == "continuous" else (starts, len(var.values))
        params.append(jax.random.normal(sub, shape))
    return params


def _round(problem: Problem, params):
    """Most likely candidate index per variable for every start: (S, D) ints."""
    cols = []
    for var, prm in zip(problem.space.variables, params):
        prm = np.asarray(prm)
        if var.kind == "continuous":
            vals = np.log(np.asarray(var.values))
            lo, hi = vals[0], vals[-1]
            x = lo + (hi - lo) / (1 + np.exp(-prm))
            cols.append(np.abs(x[:, None] - vals[None, :]).argmin(axis=1))
        else:
            cols.append(prm.argmax(axis=1))
    return np.stack(cols, axis=1)


def _line_moves(idx, sizes):
    """Every other candidate of every single variable: a coordinate line search."""
    out = []
    for i in range(len(sizes)):
        for v in range(sizes[i]):
            if v != idx[i]:
                j = idx.copy(); j[i] = v
                out.append(j)
    return out


def _pair_moves(idx, sizes):
    """All pairs of one-step moves of two variables (for ridges a line search cannot follow)."""
    out = []
    for i, k in itertools.combinations(range(len(sizes)), 2):
        for a, b in itertools.product((-1, 1), repeat=2):
            j = idx.copy(); j[i] += a; j[k] += b
            if 0 <= j[i] < sizes[i] and 0 <= j[k] < sizes[k]:
                out.append(j)
    return out


def _ridge_moves_fn(problem: Problem):
    """One-step moves of a discrete variable combined with every candidate of a continuous knob:
    follows ridges where a constraint couples them (more batch needs more bandwidth under an SLO)."""
    kinds = [v.kind for v in problem.space.variables]
    disc = [i for i, k in enumerate(kinds) if k == "discrete"]
    cont = [i for i, k in enumerate(kinds) if k == "continuous"]

    def moves(idx, sizes):
        out = []
        for i in disc:
            for a in (-1, 1):
                if not 0 <= idx[i] + a < sizes[i]:
                    continue
                for k in cont:
                    for v in range(sizes[k]):
                        j = idx.copy(); j[i] += a; j[k] = v
                        out.append(j)
        return out
    return moves


def polish(problem: Problem, run, starts_idx, budget: Optional[int], cache: dict, rng=None, kicks: int = 50):
    """Greedy exact neighbourhood search (by merit) from each start; returns (best_idx, best_score).

    ``cache`` maps index tuples to (score, merit) and holds every distinct design evaluated; the
    search stops when ``budget`` distinct designs have been evaluated.
    """
    sizes = [len(v.values) for v in problem.space.variables]
    tiers = (_line_moves, _pair_moves, _ridge_moves_fn(problem))

    def evaluate_new(idxs):
        new = list(dict.fromkeys(tuple(int(a) for a in i) for i in idxs if tuple(int(a) for a in i) not in cache))
        if budget is not None:
            new = new[:max(budget - len(cache), 0)]
        if new:
            s, _, mr = run(problem.index_to_design(np.array(new)))
            cache.update(zip(new, zip(s.tolist(), mr.tolist())))

    def descend(cur):
        while budget is None or len(cache) < budget:
            moved = False
            for moves in tiers:                           # wider moves only when narrower ones stall
                nb = moves(np.array(cur), sizes)
                evaluate_new(nb)
                known = [tuple(int(a) for a in i) for i in nb if tuple(int(a) for a in i) in cache]
                if known:
                    best = max(known, key=lambda t: cache[t][1])
                    if cache[best][1] > cache[cur][1]:
                        cur, moved = best, True
                        break
            if not moved:
                break
        return cur

    best = None
    for idx in starts_idx:
        cur = tuple(int(a) for a in idx)
        evaluate_new([cur])
        if cur not in cache:
            break
        cur = descend(cur)
        if best is None or cache[cur][1] > cache[best][1]:
            best = cur
    # iterated local search: kick 2-3 variables of the incumbent and descend again
    if rng is not None and best is not None:
        for _ in range(kicks):
            if budget is not None and len(cache) >= budget:
                break
            j = np.array(best)
            for i in rng.choice(len(sizes), size=min(len(sizes), int(rng.integers(2, 4))), replace=False):
                j[i] = int(np.clip(j[i] + rng.choice([-2, -1, 1, 2]), 0, sizes[i] - 1))
            start = tuple(int(a) for a in j)
            evaluate_new([start])
            if start not in cache:
                break
            cur = descend(start)
            if cache[cur][1] > cache[best][1]:
                best = cur
    feasible = [(k, v[0]) for k, v in cache.items() if np.isfinite(v[0])]
    if not feasible:
        return None, -np.inf
    return max(feasible, key=lambda t: t[1])


_COMPILED: dict = {}


def _compiled(problem: Problem, starts, steps, lr, temperature, penalty):
    """Jitted descent and exact scorer, built once per (problem, settings) and reused by seeds."""
    key = (id(problem), starts, steps, lr, tuple(temperature), tuple(penalty))
    hit = _COMPILED.get(key)
    if hit is not None and hit[0] is problem:
        return hit[1], hit[2]
    opt = optax.adam(lr)
    temps = jnp.geomspace(temperature[0], temperature[1], steps)
    mus = jnp.geomspace(penalty[0], penalty[1], steps)
    vg = jax.vmap(jax.value_and_grad(lambda prm, T, mu: relaxed_loss(problem, prm, T, mu)), in_axes=(0, None, None))

    @jax.jit
    def descend(params):
        state = opt.init(params)

        def step(carry, sched):
            prm, st = carry
            val, g = vg(prm, *sched)
            g = jax.tree.map(lambda a: jnp.where(jnp.isfinite(a), a, 0.0), g)
            upd, st = opt.update(g, st, prm)
            return (optax.apply_updates(prm, upd), st), jnp.min(val)
        (prm, _), losses = jax.lax.scan(step, (params, state), (temps, mus))
        return prm, losses

    run = exact_scores(problem, chunk=1024)
    _COMPILED[key] = (problem, descend, run)
    return descend, run


def gradient_search(problem: Problem, seed: int = 0, starts: int = 8, steps: int = 24, lr: float = 0.3,
                    temperature=(1.0, 0.05), penalty=(1.0, 300.0), polish_from: int = 8,
                    budget: Optional[int] = None, progress=None) -> SearchResult:
    """Multi-start relaxed gradient search + rounding + exact polish. ``budget``: max evaluations."""
    t0 = time.perf_counter()
    descend, run = _compiled(problem, starts, steps, lr, temperature, penalty)
    params = _init_params(problem, jax.random.PRNGKey(seed), starts)
    params, losses = descend(params)
    relaxed_evals = starts * steps
    rounded = np.unique(_round(problem, params), axis=0)
    cache: dict = {}
    remaining = None if budget is None else max(budget - relaxed_evals, 0)
    scores, _, merit = run(problem.index_to_design(rounded))
    cache.update(zip((tuple(int(a) for a in r) for r in rounded), zip(scores.tolist(), merit.tolist())))
    order = np.argsort(-merit)[:polish_from]
    rng = np.random.default_rng(seed)
    best_i, best_s = polish(problem, run, rounded[order], remaining, cache, rng=rng)
    evals = relaxed_evals + len(cache)
    trace = [{"evaluations": (k + 1) * starts, "best": float(-l)} for k, l in enumerate(np.asarray(losses))]
    trace.append({"evaluations": evals, "best": float(best_s)})
    best_x = problem.index_to_design(np.array([best_i]))[0] if best_i is not None else None
    return finish(problem, "gradient", best_x, best_s, evals, t0, trace, seed=seed, starts=starts, steps=steps,
                  relaxed_evaluations=relaxed_evals, exact_evaluations=len(cache))
