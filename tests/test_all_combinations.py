"""Every hardware x workload x phase preset evaluates to finite metrics, or feasible=false with a reason."""
import math
from pathlib import Path

import jax
import pytest

from dse.config import CONF_DIR, compose_config
from dse.build import build
from dse.perf import evaluate
from dse.report_json import metrics_json

HARDWARE = sorted(p.stem for p in (Path(CONF_DIR) / "hardware").glob("*.yaml"))
WORKLOADS = sorted(p.stem for p in (Path(CONF_DIR) / "workload").glob("*.yaml"))


@pytest.mark.parametrize("phase", ["train", "prefill", "decode"])
@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("hardware", HARDWARE)
def test_every_combination(hardware, workload, phase):
    ov = [f"hardware={hardware}", f"workload={workload}", f"phase={phase}", "hardware.num_chips=64", "plan.tp=8"]
    cfg = compose_config(ov)
    if cfg.workload.experts:
        ov.append(f"plan.ep={min(8, cfg.workload.experts)}")
    if phase != "train":
        ov.append("phase.batch=256")
    s, m, p, pl = build(compose_config(ov))
    out = metrics_json(evaluate(s, m, p, pl), s)
    for k in ("step_time_s", "tokens_per_s", "power_w", "tokens_per_joule", "memory_per_chip_bytes"):
        assert out[k] is not None and math.isfinite(out[k]) and out[k] > 0, (k, out[k])
    assert out["feasible"] == (not out["infeasible_reasons"])
    if not out["feasible"]:
        assert all(isinstance(r, str) and r for r in out["infeasible_reasons"])
    assert (out["ttft_s"] is not None) == (phase == "prefill")
    assert (out["tpot_s"] is not None) == (phase == "decode")
