"""A real 4-trial Optuna sweep through the CLI, then task=report over its directory."""
import csv
import json
import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")


@pytest.mark.slow
def test_optuna_sweep_then_report(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled")
    sweep = tmp_path / "opt"
    r = subprocess.run([sys.executable, "-m", "dse", "-m", "+sweep=r1_decode_optuna", "hydra.sweeper.n_trials=4",
                        f"hydra.sweep.dir={sweep}"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 4
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["best_value"]
    values = [json.loads((j / "metrics.json").read_text()) for j in jobs]
    assert best == pytest.approx(max(v["tokens_per_joule"] if v["feasible"] else 0.0 for v in values), rel=1e-6)
    rep = subprocess.run([sys.executable, "-m", "dse", "task=report", f"sweep_dir={sweep}",
                          f"hydra.run.dir={tmp_path / 'rep'}"], capture_output=True, text=True, env=env, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    rows = list(csv.DictReader(open(sweep / "report.csv")))
    assert len(rows) == 4
    assert sorted(float(r["tokens_per_joule"]) for r in rows) == pytest.approx(sorted(v["tokens_per_joule"] for v in values))
    assert (sweep / "pareto.png").exists() and (sweep / "report.md").exists()
