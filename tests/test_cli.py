"""The CLI contract: `python -m dse task=evaluate ...` prints the metrics JSON as its last stdout line,
writes metrics.json, and bad input exits 2 with one line naming the field, value and what is allowed."""
import json
import os
import subprocess
import sys

import pytest

REQUIRED = {"step_time_s", "tokens_per_s", "tokens_per_s_per_chip", "mfu", "memory_per_chip_bytes",
            "memory_capacity_bytes", "power_w", "tokens_per_joule", "feasible", "breakdown", "ttft_s", "tpot_s", "system"}


def run_dse(tmp_path, *args, env=None):
    e = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="disabled", **(env or {}))
    return subprocess.run([sys.executable, "-m", "dse", *args, f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, env=e, timeout=300)


def test_evaluate_issue_example(tmp_path):
    r = run_dse(tmp_path, "task=evaluate", "hardware=dgx_a100", "workload=gpt3_175b", "phase=train",
                "hardware.num_chips=1024", "plan.tp=8", "plan.pp=8", "plan.dp=16", "phase.global_batch=1536",
                "phase.seq_len=2048")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert REQUIRED <= set(out)
    assert {"num_chips", "peak_flops_bf16", "hbm_bytes", "hbm_bandwidth", "power_max_w"} <= set(out["system"])
    assert out["system"]["num_chips"] == 1024
    assert out["system"]["peak_flops_bf16"] == pytest.approx(1024 * 312e12, rel=1e-6)
    assert out["tokens_per_s"] == pytest.approx(1536 * 2048 / out["step_time_s"], rel=1e-5)
    assert out["tokens_per_s_per_chip"] == pytest.approx(out["tokens_per_s"] / 1024, rel=1e-5)
    assert out["tokens_per_joule"] == pytest.approx(out["tokens_per_s"] / out["power_w"], rel=1e-5)
    assert sum(out["breakdown"].values()) == pytest.approx(out["step_time_s"], rel=1e-4)
    assert json.loads((tmp_path / "metrics.json").read_text()) == out


def test_evaluate_decode_on_both_supernodes(tmp_path):
    for hw in ("cloudmatrix384", "gb200_nvl72"):
        r = run_dse(tmp_path, "task=evaluate", f"hardware={hw}", "workload=deepseek_v3", "phase=decode",
                    "hardware.num_chips=64", "plan.ep=64", "phase.batch=4096", "phase.dtype=int8")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["tpot_s"] > 0 and out["tokens_per_s_per_chip"] > 0 and out["power_w"] > 0
        assert out["tokens_per_joule"] > 0 and out["ttft_s"] is None


BAD = [
    (["hardware=no_such_box"], "hardware=no_such_box", "cloudmatrix384"),
    (["plan.tpp=8"], "plan.tpp=8", "microbatch"),
    (["plan.tp=abc"], "plan.tp", "abc"),
    (["hardware.scale_up.gb_s=-5"], "hardware.scale_up.gb_s", "> 0"),
    (["hardware.chip.hbm_gb=0"], "hardware.chip.hbm_gb", "> 0"),
    (["hardware.num_chips=0"], "hardware.num_chips=0", "[1,"),
    (["workload=gpt3_175b", "plan.tp=7", "hardware.num_chips=7"], "plan.tp", "divisor of workload.heads=96"),
    (["workload=gpt3_175b", "plan.tp=8", "plan.dp=3", "hardware.num_chips=64"], "plan.dp*tp*pp*cp", "hardware.num_chips=64"),
    (["plan.recompute=sometimes"], "plan.recompute", "selective"),
    (["phase=decode", "phase.batch=4", "hardware.num_chips=8"], "phase.batch", "plan.dp=8"),
    (["hardware=dgx_a100", "phase.dtype=fp8", "hardware.num_chips=8"], "phase.dtype", "bf16 | int8"),
    (["hardware.scale_up.latency_us=nan"], "hardware.scale_up.latency_us", "finite"),
    (["task=nonsense"], "task", "evaluate"),
]


@pytest.mark.parametrize("args,field,allowed", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_is_one_line(tmp_path, args, field, allowed):
    r = run_dse(tmp_path, "task=evaluate", *args) if not args[0].startswith("task=") else run_dse(tmp_path, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert field in lines[0] and allowed in lines[0], lines[0]
    assert "Traceback" not in r.stderr
