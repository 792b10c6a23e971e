"""The main job on a reduced config: every artifact exists and agrees with task=evaluate."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _dse(*args, env=None):
    e = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dse", *args], capture_output=True, text=True, env=e, timeout=900)


@pytest.mark.slow
def test_quick_study_artifacts_and_consistency(tmp_path):
    run = tmp_path / "study"
    r = _dse("experiment=cm384_vs_nvl72_quick", f"hydra.run.dir={run}", "tracking.mode=offline",
             env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name in ("results.csv", "pareto.png", "breakdown_time.png", "breakdown_power.png", "sensitivities.png",
                 "report.md", "study.json"):
        assert (run / name).exists() and (run / name).stat().st_size > 0, name
    assert list((run / "wandb").glob("offline-run-*")), "no offline wandb run"
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 2 * 2 + 2                                   # systems x scenarios + one budget x two families
    report = (run / "report.md").read_text()
    assert "CloudMatrix384" in report and "GB200 NVL72" in report and "150 kW" in report
    # every best plan reproduces exactly through task=evaluate
    for res in out["results"]:
        if not res["feasible"]:
            continue
        ev = _dse("task=evaluate", *res["overrides"].split(), f"hydra.run.dir={tmp_path / 'ev'}", env={"WANDB_MODE": "disabled"})
        assert ev.returncode == 0, ev.stderr
        m = json.loads(ev.stdout.strip().splitlines()[-1])
        assert m["tokens_per_s"] == pytest.approx(res["tokens_per_s"], rel=1e-5)
        assert m["power_w"] == pytest.approx(res["power_w"], rel=1e-5)
        break
