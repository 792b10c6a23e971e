"""Exhaustive search: every design of the product space, chunked ``jit(vmap)``: the ground truth."""
from __future__ import annotations

import time

import numpy as np

from dse.search.common import SearchResult, exact_scores, finish
from dse.space import Problem


def grid_indices(problem: Problem, start: int, stop: int) -> np.ndarray:
    """Candidate indices (stop - start, D) of flat grid positions [start, stop) (row-major)."""
    sizes = [len(v.values) for v in problem.space.variables]
    flat = np.arange(start, stop, dtype=np.int64)
    return np.stack(np.unravel_index(flat, sizes), axis=-1)


def grid_search(problem: Problem, chunk: int = 65536, progress=None) -> SearchResult:
    """Evaluate the whole grid in chunks of ``chunk`` designs; keep the best feasible one."""
    t0 = time.perf_counter()
    run = exact_scores(problem, chunk)
    total = problem.space.size
    best_obj, best_x, trace = -np.inf, None, []
    feasible = 0
    for start in range(0, total, chunk):
        idx = grid_indices(problem, start, min(start + chunk, total))
        x = problem.index_to_design(idx)
        scores, ok, _ = run(x)
        feasible += int(ok.sum())
        i = int(np.argmax(scores))
        if scores[i] > best_obj:
            best_obj, best_x = float(scores[i]), x[i]
        trace.append({"evaluations": min(start + chunk, total), "best": best_obj})
        if progress is not None:
            progress(min(start + chunk, total), total)
    return finish(problem, "grid", best_x, best_obj, total, t0, trace, feasible_designs=feasible, grid_size=total)
