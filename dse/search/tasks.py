"""``task=search`` and ``task=grid``: run a searcher on a design space preset.

``python -m dse task=search space=<name> search=<gradient|grid|blackbox>`` prints the best design
and its exact metrics as JSON on the last stdout line (the ``task=evaluate`` keys plus ``design``,
``search`` and ``sensitivities``) and writes ``search.json`` into the run directory. Nothing
feasible found -> ``feasible: false`` with the reason; an infeasible design is never the answer.
"""
from __future__ import annotations

from dse.build import build
from dse.cli import emit, task
from dse.config import compose_config
from dse.errors import ConfigError
from dse.progress import progress_bar
from dse.search.sensitivity import sensitivities
from dse.space import Problem, space_from_config

METHODS = ("gradient", "grid", "blackbox")


def _budget(scfg, size):
    b = scfg.get("budget")
    if b is not None:
        if int(b) < 1:
            raise ConfigError("search.budget", b, "an integer >= 1")
        return int(b)
    frac = scfg.get("budget_frac")
    if frac is None:
        return None
    if not 0 < float(frac) <= 1:
        raise ConfigError("search.budget_frac", frac, "a fraction in (0, 1]")
    return max(int(size * float(frac)), 10)


def run_search(cfg):
    from dse.search.blackbox import optuna_search, random_search
    from dse.search.gradient import gradient_search
    from dse.search.grid import grid_search

    space = space_from_config(cfg.get("space"))
    scfg = cfg.get("search") or {}
    method = scfg.get("method", "gradient")
    if method not in METHODS:
        raise ConfigError("search.method", method, " | ".join(METHODS))
    problem = Problem.from_space(space)
    seed = int(scfg.get("seed", 0))
    if method == "grid":
        with progress_bar(f"grid {space.name}", space.size) as update:
            return problem, grid_search(problem, chunk=int(scfg.get("chunk", 65536)), progress=update)
    budget = _budget(scfg, space.size)
    if method == "gradient":
        return problem, gradient_search(problem, seed=seed, starts=int(scfg.get("starts", 8)),
                                        steps=int(scfg.get("steps", 24)), lr=float(scfg.get("lr", 0.3)),
                                        budget=budget)
    sampler = scfg.get("sampler", "tpe")
    if sampler not in ("tpe", "random"):
        raise ConfigError("search.sampler", sampler, "tpe | random")
    budget = budget or 1000
    return problem, (optuna_search if sampler == "tpe" else random_search)(problem, budget, seed)


def search_json(problem, result) -> dict:
    if result.best is None:
        out = {"feasible": False, "infeasible_reasons": ["no valid, feasible design found in the space"],
               "design": None, "objective": None}
    else:
        out = dict(result.metrics)
        out["design"] = result.best
        s, m, p, pl = build(compose_config(result.overrides))
        out["sensitivities"] = sensitivities(s, m, p, pl, problem.space.objective)
    out["search"] = {"space": problem.space.name, "objective_name": problem.space.objective,
                     "grid_size": problem.space.size, **result.to_json()}
    out["objective"] = result.objective if result.best is not None else None
    return out


def _tracked(cfg, name, fn):
    from dse.track import start_run
    with start_run(cfg, name) as tracker:
        problem, result = fn(cfg)
        for row in result.trace:
            tracker.log({"best_objective": row["best"]}, step=int(row["evaluations"]))
        out = search_json(problem, result)
        tracker.summary({k: v for k, v in out.items() if isinstance(v, (int, float, bool))})
    return out


@task("search")
def search_task(cfg) -> dict:
    out = _tracked(cfg, "search", run_search)
    emit(out, "search.json")
    return out


@task("grid")
def grid_task(cfg) -> dict:
    from omegaconf import OmegaConf
    cfg = OmegaConf.merge(cfg, {"search": {"method": "grid"}})
    out = _tracked(cfg, "grid", run_search)
    emit(out, "search.json")
    return out
