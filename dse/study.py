"""``task=study``: the CloudMatrix384-vs-NVL72 study (``conf/experiment/cm384_vs_nvl72.yaml``).

1. For every system x scenario (DeepSeek-R1 decode and prefill, a dense training run), the best
   plan by exhaustive search over a small plan space under the scenario's SLO: throughput per chip
   and per system, power, tokens per joule, and the time and power breakdowns.
2. Sensitivities of tokens/J to every hardware field at each system's best decode design.
3. For each power budget, the gradient search over a supernode space (chip count, scale-up domain
   and bandwidth, TP/EP, batch) per chip family: "what would you build under 150 kW / 600 kW?".
Artifacts in the run directory: ``results.csv`` (+ ``.parquet``), ``pareto.png``,
``breakdown_time.png``, ``breakdown_power.png``, ``sensitivities.png``, ``report.md``,
``study.json``; the same go to the wandb run (offline by default).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import OmegaConf

from dse.cli import emit, output_dir, task
from dse.errors import ConfigError
from dse.progress import progress_bar
from dse.report import plot_breakdown, plot_pareto, plot_sensitivities, write_table
from dse.search.common import exact_scores
from dse.search.gradient import gradient_search
from dse.search.grid import grid_indices, grid_search
from dse.search.sensitivity import sensitivities
from dse.space import Problem, Space, space_from_config

NOT_KNOBS = ("hardware.num_chips", "hardware.pue")
HEADLINE = ("tokens_per_s", "tokens_per_s_per_chip", "power_w", "tokens_per_joule", "tpot_s", "ttft_s",
            "step_time_s", "mfu", "memory_per_chip_bytes", "feasible")


def _space(name, base, variables, couple=None, objective="tokens_per_joule") -> Space:
    node = OmegaConf.create({"name": name, "base": list(base), "variables": variables, "objective": objective,
                             "couple": couple or {}})
    return space_from_config(node)


def _system_base(sys_cfg, scenario) -> List[str]:
    ov = [f"hardware={sys_cfg['hardware']}"]
    if sys_cfg.get("num_chips") is not None:
        ov.append(f"hardware.num_chips={sys_cfg['num_chips']}")
    if scenario.get("inference"):
        ov.append(f"phase.dtype={sys_cfg.get('inference_dtype', 'bf16')}")
    # a valid starting plan for the base build (the search replaces the degrees)
    n = int(sys_cfg.get("num_chips") or 8)
    if scenario.get("inference"):
        ov += [f"phase.batch={256 * n}", "plan.tp=1", f"plan.dp={n}", f"plan.ep={n if n <= 256 else 128}"]   # ep <= 256 experts, divides n
    else:
        ov += ["plan.tp=8", f"plan.dp={n // 8}"]
    return ov


def _row(label, scenario, result, extra=None) -> Dict[str, Any]:
    m = result.metrics or {"feasible": False}
    row = {"system": label, "scenario": scenario, **{k: m.get(k) for k in HEADLINE}}
    row["feasible"] = bool(result.best is not None and m.get("feasible"))
    row["design"] = result.best
    row["overrides"] = " ".join(result.overrides or [])
    row["breakdown"] = m.get("breakdown", {})
    row["power_breakdown"] = m.get("power_breakdown", {})
    row["label"] = f"{label} / {scenario}"
    row.update(extra or {})
    return row


def _all_points(problem: Problem, label: str, scenario: str, limit: int = 4000):
    """Every feasible design of a (small) plan grid as (tokens/s, power) points for the Pareto plot."""
    from dse.perf import evaluate
    import jax
    import numpy as np

    idx = grid_indices(problem, 0, min(problem.space.size, limit))
    x = problem.index_to_design(idx)
    f = jax.jit(jax.vmap(lambda d: (lambda met: (met.tokens_per_s, met.power_w))(evaluate(*problem.apply(d)))))
    tps, pw = (np.asarray(a) for a in f(x))
    scores, ok, _ = exact_scores(problem)(x)
    return [{"system": label, "scenario": scenario, "tokens_per_s": float(t), "power_w": float(p), "feasible": True,
             "label": f"{label} / {scenario}"} for t, p, o in zip(tps, pw, ok) if o]


def run_study(cfg) -> Dict[str, Any]:
    st = cfg.get("study")
    if st is None:
        raise ConfigError("study", None, "a study config (python -m dse experiment=cm384_vs_nvl72)")
    t0 = time.perf_counter()
    rows, points, sens = [], [], {}
    scen = {s["name"]: s for s in st.scenarios}
    jobs = [(sc, s) for sc in st.scenarios for s in st.systems]
    with progress_bar("study: best plans", len(jobs)) as update:
        for k, (sc, sysc) in enumerate(jobs):
            problem = Problem.from_space(_space(f"{sysc.label}/{sc.name}", _system_base(sysc, sc) + list(sc.base),
                                                OmegaConf.to_container(sc.variables)))
            res = grid_search(problem)
            rows.append(_row(sysc.label, sc.name, res, {"hardware": sysc.hardware, "num_chips": sysc.num_chips,
                                                         "searcher": "grid", "evaluations": res.evaluations}))
            if sc.name == st.supernode.scenario:
                points += _all_points(problem, sysc.label, sc.name)
                if res.best is not None:
                    from dse.build import build
                    from dse.config import compose_config
                    s, m, p, pl = build(compose_config(res.overrides))
                    sens[sysc.label] = sensitivities(s, m, p, pl, "tokens_per_joule")
            update(k + 1)
    answers = []
    sn = st.supernode
    sc = scen[sn.scenario]
    scfg = st.get("search", {})
    for budget in st.budgets_kw:
        for fam in sn.families:
            base = _system_base({**fam, "num_chips": 64}, sc) + list(sc.base) + [f"phase.power_budget_kw={budget}"]
            problem = Problem.from_space(_space(f"{fam.label}@{budget}kW", base, OmegaConf.to_container(sn.variables),
                                                OmegaConf.to_container(sn.couple), str(sn.get("objective", "tokens_per_s"))))
            budget_evals = max(int(problem.space.size * float(scfg.get("budget_frac", 0.01))), 50)
            res = gradient_search(problem, seed=int(scfg.get("seed", 0)), starts=int(scfg.get("starts", 8)),
                                  steps=int(scfg.get("steps", 24)), budget=budget_evals)
            answers.append(_row(fam.label, f"supernode@{budget:g}kW", res,
                                {"hardware": fam.hardware, "budget_kw": budget, "searcher": "gradient",
                                 "evaluations": res.evaluations, "grid_size": problem.space.size}))
    return {"rows": rows, "answers": answers, "points": points, "sensitivities": sens,
            "wall_s": time.perf_counter() - t0}


def _fmt(v, scale=1.0, nd=1):
    return "n/a" if v is None else f"{v * scale:,.{nd}f}"


def write_report(out: Path, res: Dict[str, Any]) -> List[Path]:
    rows, answers = res["rows"], res["answers"]
    files = write_table([{k: v for k, v in r.items() if k not in ("breakdown", "power_breakdown")} | {
        **{f"time.{k}": v for k, v in r["breakdown"].items()}, **{f"power.{k}": v for k, v in r["power_breakdown"].items()}}
        for r in rows + answers], out, "results")
    best = [r for r in rows if r["feasible"]]
    decode = [r for r in best if r["scenario"] == "r1_decode"]
    files.append(plot_pareto(res["points"] + answers, out / "pareto.png",
                             title="DeepSeek-R1 decode (TPOT <= 50 ms): every feasible plan, and the budget designs"))
    files.append(plot_breakdown(best, out / "breakdown_time.png", kind="time", title="Step time breakdown of each best plan"))
    files.append(plot_breakdown(best, out / "breakdown_power.png", kind="power", title="Power breakdown of each best plan"))
    if res["sensitivities"]:
        label, s = next(iter(res["sensitivities"].items()))
        top = sorted(((k, v) for k, v in s.items() if k not in NOT_KNOBS), key=lambda kv: -abs(kv[1]["elasticity"]))[:10]
        files.append(plot_sensitivities({k: v["elasticity"] for k, v in top}, out / "sensitivities.png",
                                        "elasticity of tokens/J (% per % change of the field)",
                                        title=f"{label}, DeepSeek-R1 decode: what is worth improving"))
    lines = ["# CloudMatrix384 vs GB200 NVL72 (vs an H800 cluster)", "",
             "Each row is the system's best plan (exhaustive search over TP / EP / batch or the training plan) "
             "under the scenario's SLO, maximising tokens per joule. Power is the whole system at that load "
             "(boundaries: see each hardware preset).", "",
             "| system | scenario | tokens/s per chip | tokens/s (system) | power (kW) | tokens/J | TPOT/TTFT (ms) | plan |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lat = r.get("tpot_s") if r.get("tpot_s") is not None else r.get("ttft_s")
        plan = ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in (r["design"] or {}).items())
        lines.append(f"| {r['system']} | {r['scenario']} | {_fmt(r['tokens_per_s_per_chip'])} | {_fmt(r['tokens_per_s'], 1, 0)} | "
                     f"{_fmt(r['power_w'], 1e-3)} | {_fmt(r['tokens_per_joule'], 1, 3)} | {_fmt(lat, 1e3)} | "
                     f"{plan if r['feasible'] else 'infeasible'} |")
    lines += ["", "## What supernode would you build? (gradient search, DeepSeek-R1 decode, TPOT <= 50 ms)", "",
              "Maximum throughput within the power budget and the SLO (tokens/J reported alongside).", "",
              "| power budget | family | tokens/J | tokens/s | power (kW) | design | evaluations (grid size) |",
              "|---:|---|---:|---:|---:|---|---|"]
    for a in answers:
        d = ", ".join(f"{k.split('.')[-1]}={v:.4g}" for k, v in (a["design"] or {}).items())
        lines.append(f"| {a['budget_kw']:g} kW | {a['system']} | {_fmt(a['tokens_per_joule'], 1, 3)} | {_fmt(a['tokens_per_s'], 1, 0)} | "
                     f"{_fmt(a['power_w'], 1e-3)} | {d or 'nothing feasible'} | {a['evaluations']} ({a['grid_size']}) |")
    for budget in sorted({a["budget_kw"] for a in answers}):
        ok = [a for a in answers if a["budget_kw"] == budget and a["feasible"]]
        if ok:
            w = max(ok, key=lambda a: a["tokens_per_s"])
            lines.append(f"\n**Under {budget:g} kW**: build the {w['system']} design above: "
                         f"{w['tokens_per_joule']:.3f} tokens/J, {w['tokens_per_s']:,.0f} tokens/s at {w['power_w'] / 1e3:.0f} kW.")
    if decode:
        w = max(decode, key=lambda r: r["tokens_per_joule"])
        lines.append(f"\nOn DeepSeek-R1 decode at a 50 ms TPOT, the most energy-efficient system as deployed is "
                     f"**{w['system']}** ({w['tokens_per_joule']:.3f} tokens/J).")
    for label, s in res["sensitivities"].items():
        top = sorted((v for k, v in s.items() if k not in NOT_KNOBS), key=lambda v: -abs(v["elasticity"]))[:3]
        lines.append(f"\nSensitivities ({label}, decode): " + "; ".join(v["text"] for v in top) + ".")
    lines += ["", "Artifacts: results.csv, pareto.png, breakdown_time.png, breakdown_power.png, sensitivities.png.",
              f"Wall time {res['wall_s']:.0f} s."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    files.append(out / "report.md")
    return files


@task("study")
def study_task(cfg) -> dict:
    from dse.track import start_run

    out = output_dir()
    with start_run(cfg, "study") as tracker:
        res = run_study(cfg)
        files = write_report(out, res)
        tracker.log_table("results", [{k: v for k, v in r.items() if not isinstance(v, dict)} for r in res["rows"] + res["answers"]])
        for f in files:
            if str(f).endswith(".png"):
                tracker.log_image(Path(f).stem, f)
        best = max((a for a in res["answers"] if a["feasible"]), key=lambda a: a["tokens_per_joule"], default=None)
        summary = {"rows": len(res["rows"]), "wall_s": res["wall_s"],
                   "best_tokens_per_joule": best["tokens_per_joule"] if best else None}
        tracker.summary(summary)
    result = {"study": cfg.study.name, **summary, "files": [str(f) for f in files],
              "results": [{k: v for k, v in r.items() if k not in ("breakdown", "power_breakdown")} for r in res["rows"]],
              "answers": [{k: v for k, v in a.items() if k not in ("breakdown", "power_breakdown")} for a in res["answers"]],
              "objective": summary["best_tokens_per_joule"]}
    emit(result, "study.json")
    return result
