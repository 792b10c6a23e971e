"""Black-box baselines over the same candidate grid and budget: uniform random search and Optuna TPE.

Both sample candidate indices per variable (categorical for discrete variables; for continuous
knobs the same grid the exhaustive search uses), evaluate exactly, and keep the best valid,
feasible design. Evaluations are counted like the gradient search's (one per design scored).
Optuna is an optional dependency (``pip install -e ".[optuna]"``).
"""
from __future__ import annotations

import time

import numpy as np

from dse.errors import ConfigError
from dse.search.common import SearchResult, exact_scores, finish
from dse.space import Problem


def random_search(problem: Problem, budget: int, seed: int = 0) -> SearchResult:
    """``budget`` designs drawn uniformly from the grid (with replacement), scored in one batch."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    sizes = [len(v.values) for v in problem.space.variables]
    idx = np.stack([rng.integers(0, n, budget) for n in sizes], axis=1)
    scores, _, _ = exact_scores(problem, chunk=4096)(problem.index_to_design(idx))
    best = np.maximum.accumulate(scores)
    trace = [{"evaluations": int(k + 1), "best": float(best[k])} for k in range(0, budget, max(budget // 50, 1))]
    i = int(np.argmax(scores))
    x = problem.index_to_design(idx[i:i + 1])[0] if np.isfinite(scores[i]) else None
    return finish(problem, "random", x, float(scores[i]), budget, t0, trace, seed=seed)


def optuna_search(problem: Problem, budget: int, seed: int = 0) -> SearchResult:
    """Optuna's TPE sampler (seeded) for ``budget`` trials; infeasible trials score -1e30."""
    try:
        import optuna
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ConfigError("search.method", "optuna", 'random | gradient | grid (install the extra: pip install -e ".[optuna]")') from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.perf_counter()
    run = exact_scores(problem, chunk=8)
    sizes = [len(v.values) for v in problem.space.variables]
    names = [f"v{i}" for i in range(len(sizes))]
    best = {"s": -np.inf, "x": None}
    trace = []

    def objective(trial):
        idx = np.array([[trial.suggest_int(n, 0, k - 1) for n, k in zip(names, sizes)]])
        x = problem.index_to_design(idx)
        s, _, _ = run(x)
        s = float(s[0])
        if s > best["s"]:
            best["s"], best["x"] = s, x[0]
        trace.append({"evaluations": trial.number + 1, "best": best["s"]})
        return s if np.isfinite(s) else -1e30

    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=budget)
    return finish(problem, "optuna", best["x"], best["s"], budget, t0, trace[:: max(budget // 50, 1)], seed=seed)
