"""Search quality: gradient search (10 seeds) vs the exhaustive grid, Optuna TPE and random search.

For each shipped space preset: the grid's optimum and evaluations; the gradient search from 10
seeds with a budget of 1 % of the grid's evaluations (worst gap to the grid optimum, evaluations
used); Optuna TPE and uniform random search with the same budget as the gradient search used
(best over 3 seeds each is NOT taken: seed 0, like-for-like with one gradient seed, and the median
over seeds is reported too). Wall times are measured after compilation where stated.

Run: ``python benchmarks/search_quality.py [--quick]``. Last line: one JSON object mapping each
problem to {grid_best, grid_evals, gradient_worst_gap_pct, gradient_evals, optuna_best, random_best, seeds}.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_problem  # noqa: E402

from dse.search.blackbox import optuna_search, random_search  # noqa: E402
from dse.search.gradient import gradient_search  # noqa: E402
from dse.search.grid import grid_search  # noqa: E402

PROBLEMS = ("gpt3_a100", "r1_decode_supernode", "llama70b_h100")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    seeds = 2 if a.quick else 10
    summary = {}
    for name in PROBLEMS:
        problem = load_problem(name)
        budget = max(problem.space.size // 100, 10)
        t = time.perf_counter(); g = grid_search(problem); grid_s = time.perf_counter() - t
        grads, walls = [], []
        for seed in range(seeds):
            t = time.perf_counter()
            grads.append(gradient_search(problem, seed=seed, budget=budget))
            walls.append(time.perf_counter() - t)
        gaps = [100.0 * (1.0 - r.objective / g.objective) if r.best else float("inf") for r in grads]
        evals = [r.evaluations for r in grads]
        used = int(max(evals))
        opt = [optuna_search(problem, used, seed=s) for s in range(1 if a.quick else 3)]
        rnd = [random_search(problem, used, seed=s) for s in range(1 if a.quick else 3)]
        best = lambda rs: [r.objective if r.best else float("nan") for r in rs]
        summary[name] = {
            "grid_best": g.objective, "grid_evals": g.evaluations, "grid_wall_s": grid_s,
            "gradient_worst_gap_pct": float(max(gaps)), "gradient_median_gap_pct": float(np.median(gaps)),
            "gradient_evals": used, "gradient_evals_pct_of_grid": 100.0 * used / g.evaluations,
            "gradient_median_wall_s": float(np.median(walls[1:] if len(walls) > 1 else walls)),
            "optuna_best": float(np.nanmedian(best(opt))), "optuna_runs": best(opt),
            "random_best": float(np.nanmedian(best(rnd))), "random_runs": best(rnd), "seeds": seeds}
        s = summary[name]
        print(f"{name}: grid {g.objective:.4f} ({g.evaluations} evals, {grid_s:.1f} s) | gradient worst gap "
              f"{s['gradient_worst_gap_pct']:.3f} % with <= {used} evals ({s['gradient_evals_pct_of_grid']:.2f} %), "
              f"median {s['gradient_median_wall_s']:.1f} s | optuna {s['optuna_best']:.4f} | random {s['random_best']:.4f}",
              flush=True)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk in ("grid_best", "grid_evals", "gradient_worst_gap_pct",
                                                                     "gradient_evals", "optuna_best", "random_best", "seeds")}
                      for k, v in summary.items()}))


if __name__ == "__main__":
    main()
