"""``task=validate``: predictions vs published measurements, as a table and ``docs/validation.md``.

Cases (``dse/data/measurements.yaml``, provenance in ``shared/reference``):
* Megatron SC'21 Table 1: TFLOP/s per GPU (eq. 3 FLOPs / predicted step time), 10 runs, DP > 1;
* Korthikanti 2022 Table 5: iteration time, full recompute and SP + selective recompute;
* Korthikanti 2022 Fig. 1: per-GPU memory of weights + optimizer state and of activations;
* CloudMatrix-Infer (DeepSeek-R1 INT8 on CloudMatrix384): tokens/s per NPU and TPOT;
* out of sample: DeepSeek FP8 serving on H800 (DeepSeek profile) and H100 (SGLang), tokens/s per GPU.
Targets: Table 5 mean |err| <= 5 %, max <= 10 %; Table 1 mean <= 8 %, max <= 15 %; memory within
10 %; CloudMatrix decode within 15 % (20 % at 8 sequences per NPU), prefill within 15 %.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import numpy as np

from dse.cli import emit, task
from dse.cost import memory as M
from dse.perf import evaluate
from dse.validate_data import (build_case, cloudmatrix_cases, gpu_serving_cases, korthikanti_cases,
                               load_measurements, megatron_cases, megatron_eq3_flops)

GIB = 2.0 ** 30
TARGETS = {"megatron_sc21_table1": (8.0, 15.0), "korthikanti_table5": (5.0, 10.0),
           "korthikanti_fig1_memory": (10.0, 10.0), "cloudmatrix384_serving": (15.0, 20.0),
           "gpu_deepseek_serving": (30.0, 30.0)}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "validation.md"


def _row(table, name, measured, predicted, unit, tol=None):
    err = 100.0 * (predicted / measured - 1.0)
    return dict(table=table, case=name, measured=measured, predicted=predicted, unit=unit, error_pct=err, tol_pct=tol)


def run_validation() -> List[Dict]:
    """Every validation case: measured, predicted, error (%)."""
    rows = []
    for c in megatron_cases():
        s, m, p, pl = build_case(c)
        step = float(evaluate(s, m, p, pl).step_time_s)
        tflops = megatron_eq3_flops(float(p.global_batch), float(m.layers), float(m.hidden)) / (step * float(s.num_chips)) / 1e12
        rows.append(_row(c.table, c.name, c.measured, tflops, c.unit, 15.0))
    for c in korthikanti_cases():
        s, m, p, pl = build_case(c)
        rows.append(_row(c.table, c.name, c.measured, float(evaluate(s, m, p, pl).step_time_s), c.unit, 10.0))
    rows += memory_rows()
    ref = {r["name"]: r for r in load_measurements()["cloudmatrix384_serving"]}
    for c in cloudmatrix_cases():
        s, m, p, pl = build_case(c)
        met = evaluate(s, m, p, pl)
        r = ref[c.name]
        rows.append(_row(c.table, c.name, c.measured, float(met.tokens_per_s_per_chip), c.unit, 100 * r["tol"]))
        if "tpot_ms" in r and r["phase"] == "decode":
            rows.append(_row(c.table, c.name + " TPOT", r["tpot_ms"], 1e3 * float(met.tpot_s), "ms", 100 * r["tol"]))
    for c in gpu_serving_cases():
        s, m, p, pl = build_case(c)
        rows.append(_row(c.table, c.name + " (out of sample)", c.measured,
                         float(evaluate(s, m, p, pl).tokens_per_s_per_chip), c.unit, 30.0))
    return rows


def memory_rows() -> List[Dict]:
    """Korthikanti Fig. 1: weights + grads + Adam state of the transformer layers (18 B/param, no
    embedding) and activations with no recompute (TP only) and with SP + selective recompute."""
    k = load_measurements()["korthikanti_2022"]
    cases = {c.name.split()[0]: c for c in korthikanti_cases() if c.name.endswith("full")}
    rows = []
    for wl, states_gib, none_gib, seqsel_gib in k["fig1_memory_gib"]["rows"]:
        c = cases[wl]
        base = [o for o in c.overrides if not o.startswith(("plan.recompute", "plan.sp"))]
        for label, extra, meas in (("activations none", ["plan.recompute=none", "plan.sp=false"], none_gib),
                                   ("activations seq+sel", ["plan.recompute=selective", "plan.sp=true"], seqsel_gib)):
            from dse.build import build
            from dse.config import compose_config
            s, m, p, pl = build(compose_config(base + extra))
            rows.append(_row("korthikanti_fig1_memory", f"{wl} {label}", meas,
                             float(M.training_activation_bytes(m, pl, p)) / GIB, "GiB per GPU", 10.0))
        layers, _ = M.params_per_chip(m, pl)
        rows.append(_row("korthikanti_fig1_memory", f"{wl} params+optimizer", states_gib,
                         float(layers) * (M.WEIGHT_B + M.GRAD_B + M.OPT_B) / GIB, "GiB per GPU", 10.0))
    return rows


def summarise(rows: List[Dict]) -> Dict[str, Dict[str, float]]:
    out = {}
    for table in dict.fromkeys(r["table"] for r in rows):
        e = np.abs([r["error_pct"] for r in rows if r["table"] == table])
        out[table] = {"n": int(e.size), "mean_abs_pct": float(e.mean()), "max_abs_pct": float(e.max())}
    return out


def markdown(rows: List[Dict], summary) -> str:
    lines = ["# Validation: dse predictions vs published measurements", "",
             "Generated by `python -m dse task=validate` (one calibration per chip: "
             "`experiments/calibrate_a100.py`, `experiments/calibrate_910c.py`).", ""]
    for table, st in summary.items():
        mean_t, max_t = TARGETS[table]
        lines += [f"## {table}", "",
                  f"mean |error| {st['mean_abs_pct']:.2f} % (target <= {mean_t:g} %), "
                  f"max {st['max_abs_pct']:.2f} % (target <= {max_t:g} %), n = {st['n']}", "",
                  "| case | measured | predicted | unit | error |", "|---|---:|---:|---|---:|"]
        for r in rows:
            if r["table"] == table:
                lines.append(f"| {r['case']} | {r['measured']:.4g} | {r['predicted']:.4g} | {r['unit']} | {r['error_pct']:+.1f} % |")
        lines.append("")
    return "\n".join(lines)


@task("validate")
def validate_task(cfg) -> dict:
    rows = run_validation()
    summary = summarise(rows)
    md = markdown(rows, summary)
    print(md)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(md + "\n")
    out = {"summary": summary, "docs": str(DOCS), "rows": rows}
    emit(out, "validation.json")
    return out
